"""Encryption at rest of keystore credentials: AES-256-GCM under the master key.

The record id is the associated data, so a ciphertext copied onto another record fails to
decrypt. The stored form is ``b"v1" || nonce(12) || ciphertext+tag``.

The key-check value (:meth:`MasterKey.check_value`) is an HMAC-SHA256 of a constant under a subkey of
the master key: the database keeps it to tell the right key from another one, and it reveals nothing
about the key. A master key file is written mode 0600 and never overwritten (:func:`write_key_file`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyorch.domain.errors import ConfigurationError
from keyorch.logs import get_logger

_VERSION = b"v1"
_NONCE_BYTES = 12
_CHECK_INFO = b"keyorch master key check"
_CHECK_CONSTANT = b"keyorch master key check v1"


class MasterKey:
    """A 32-byte key. Its repr never shows the key."""

    __slots__ = ("_aead", "_check", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError(f"the master key must be 32 bytes; got {len(key)} bytes")
        self._key = key
        self._aead = AESGCM(key)
        self._check: str | None = None

    def check_value(self) -> str:
        """HMAC-SHA256 of a constant under a subkey (hex): tells this key from any other, reveals nothing of it."""
        if self._check is None:
            self._check = hmac.new(self.derive(_CHECK_INFO), _CHECK_CONSTANT, hashlib.sha256).hexdigest()
        return self._check

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
        """The key in ``path``; a file that other users can read is warned about (a log line, never the key)."""
        try:
            mode = stat.S_IMODE(Path(path).stat().st_mode)
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"master key file {path!r} cannot be read: {exc}") from None
        if mode & 0o077:
            get_logger(component="crypto").warning(
                "the master key file can be read by other users; run chmod 600 on it",
                path=path,
                mode=f"{mode:04o}",
            )
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


def write_key_file(path: str, key: str) -> None:
    """Write a new master key file, mode 0600; refuse a path that already exists (a key is never overwritten)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(
            f"--out {path!r} already exists; a master key file is never overwritten (choose a new path)"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"--out {path!r} cannot be created: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (key + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
