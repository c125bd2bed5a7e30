"""Encryption at rest of keystore credentials: AES-256-GCM under the master key.

The record id is the associated data, so a ciphertext copied onto another record fails to
decrypt. The stored form is ``b"v1" || nonce(12) || ciphertext+tag``.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyorch.domain.errors import ConfigurationError

_VERSION = b"v1"
_NONCE_BYTES = 12


class MasterKey:
    """A 32-byte key. Its repr never shows the key."""

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError(f"the master key must be 32 bytes; got {len(key)} bytes")
        self._key = key
        self._aead = AESGCM(key)

    def derive(self, info: bytes, length: int = 32) -> bytes:
        """A subkey for one purpose (HKDF-SHA256, no salt, ``info`` names the purpose)."""
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(self._key)

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    @classmethod
    def from_base64(cls, text: str, source: str = "KEYORCH_MASTER_KEY") -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"{source} is not valid base64; generate one with `keyorch master-key generate`"
            ) from None
        if len(raw) != 32:
            raise ConfigurationError(f"{source} must decode to 32 bytes; it decodes to {len(raw)} bytes")
        return cls(raw)

    @classmethod
    def from_file(cls, path: str) -> MasterKey:
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"master key file {path!r} cannot be read: {exc}") from None
        return cls.from_base64(text, source=f"master key file {path!r}")

    def encrypt(self, plaintext: bytes, associated_data: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated_data.encode())

    def decrypt(self, blob: bytes, associated_data: str) -> bytes:
        if not blob.startswith(_VERSION) or len(blob) < len(_VERSION) + _NONCE_BYTES + 16:
            raise ConfigurationError("stored credentials are not in a format this keyorch can read")
        nonce = blob[len(_VERSION) : len(_VERSION) + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[len(_VERSION) + _NONCE_BYTES :], associated_data.encode())
        except InvalidTag:
            raise ConfigurationError(
                "stored credentials cannot be decrypted: wrong master key, or the record was tampered with"
            ) from None


def generate_master_key() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
