"""Key material for the Azure Key Vault fake: key specs, generation, public JWKs and the
service-side key operations (encrypt, decrypt, wrapKey, unwrapKey) done for real with
``cryptography``.

RSA keys (``RSA``/``RSA-HSM``) support ``RSA-OAEP``, ``RSA-OAEP-256`` and ``RSA1_5``; EC keys
are generated for real (their JWK carries ``crv``/``x``/``y``) but have no encrypt/wrap
algorithms, as in Key Vault; ``oct`` keys (Managed HSM only) support ``A128KW``/``A192KW``/
``A256KW`` for wrapping and ``A128GCM``/``A192GCM``/``A256GCM`` for encryption.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from keyorch.fakes.base import FakeError

Material = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | bytes

RSA_KTYS = ("RSA", "RSA-HSM")
EC_KTYS = ("EC", "EC-HSM")
OCT_KTYS = ("oct", "oct-HSM")
RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
    "P-256K": ec.SECP256K1,
}
BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
KEY_OPS = ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export")
DEFAULT_OPS = {
    "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "EC": ["sign", "verify"],
    "oct": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
}
#: URL segment of a key operation -> the ``key_ops`` entry it needs
OPERATION_SEGMENTS = {"encrypt": "encrypt", "decrypt": "decrypt", "wrapkey": "wrapKey", "unwrapkey": "unwrapKey"}


def bad_parameter(message: str) -> FakeError:
    return FakeError(400, "BadParameter", message)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not BASE64URL.fullmatch(value):
        raise bad_parameter(f"Property {field} must be a base64url string.")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise bad_parameter(f"Property {field} is not valid base64url.") from exc


def _int_bytes(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8 or 1, "big")


def family(kty: str) -> str:
    """``RSA``, ``EC`` or ``oct`` for any (HSM or software) key type."""
    return kty.removesuffix("-HSM")


@dataclass(frozen=True)
class KeySpec:
    kty: str
    key_size: int | None = None
    crv: str | None = None
    public_exponent: int = 65537

    @classmethod
    def parse(cls, doc: dict[str, Any], *, allow_oct: bool) -> KeySpec:
        kty = doc.get("kty")
        allowed = RSA_KTYS + EC_KTYS + (OCT_KTYS if allow_oct else ())
        if not isinstance(kty, str) or kty not in allowed:
            raise bad_parameter(f"The kty '{kty}' is not valid here; allowed values: {', '.join(allowed)}.")
        size, crv, exponent = doc.get("key_size"), doc.get("crv"), doc.get("public_exponent", 65537)
        if kty in RSA_KTYS:
            size = 2048 if size is None else size
            if type(size) is not int or size not in RSA_SIZES:
                raise bad_parameter(f"RSA key_size must be one of {RSA_SIZES}.")
            if type(exponent) is not int or exponent not in (3, 65537):
                raise bad_parameter("public_exponent must be 3 or 65537.")
            return cls(kty, key_size=size, public_exponent=exponent)
        if kty in EC_KTYS:
            crv = "P-256" if crv is None else crv
            if not isinstance(crv, str) or crv not in CURVES:
                raise bad_parameter(f"crv must be one of {', '.join(CURVES)}.")
            return cls(kty, crv=crv)
        size = 256 if size is None else size
        if type(size) is not int or size not in OCT_SIZES:
            raise bad_parameter(f"oct key_size must be one of {OCT_SIZES}.")
        return cls(kty, key_size=size)

    def generate(self) -> Material:
        if self.kty in RSA_KTYS:
            return rsa.generate_private_key(self.public_exponent, self.key_size or 2048)
        if self.kty in EC_KTYS:
            return ec.generate_private_key(CURVES[self.crv or "P-256"]())
        return os.urandom((self.key_size or 256) // 8)


def public_jwk(kty: str, material: Material) -> dict[str, Any]:
    """The public part of a key as Key Vault returns it (never private parts, never ``k``)."""
    if isinstance(material, rsa.RSAPrivateKey):
        numbers = material.public_key().public_numbers()
        return {"n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))}
    if isinstance(material, ec.EllipticCurvePrivateKey):
        point = material.public_key().public_numbers()
        size = (material.curve.key_size + 7) // 8
        crv = next(name for name, curve in CURVES.items() if isinstance(material.curve, curve))
        return {"crv": crv, "x": b64url(point.x.to_bytes(size, "big")), "y": b64url(point.y.to_bytes(size, "big"))}
    return {}


def _rsa_padding(alg: str) -> padding.AsymmetricPadding:
    if alg == "RSA-OAEP":  # SHA-1 is what the JWA algorithm RSA-OAEP is defined with
        sha1 = hashes.SHA1()  # noqa: S303
        return padding.OAEP(mgf=padding.MGF1(sha1), algorithm=sha1, label=None)
    if alg == "RSA-OAEP-256":
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    if alg == "RSA1_5":
        return padding.PKCS1v15()
    raise bad_parameter(f"Algorithm '{alg}' is not supported for an RSA key.")


def _rsa_operation(operation: str, alg: str, key: rsa.RSAPrivateKey, value: bytes) -> dict[str, Any]:
    pad = _rsa_padding(alg)
    try:
        if operation in ("encrypt", "wrapKey"):
            return {"value": b64url(key.public_key().encrypt(value, pad))}
        return {"value": b64url(key.decrypt(value, pad))}
    except ValueError as exc:
        raise bad_parameter(f"The {operation} operation failed: the value does not fit the key or algorithm.") from exc


def _oct_operation(operation: str, alg: str, key: bytes, value: bytes, doc: dict[str, Any]) -> dict[str, Any]:
    bits = len(key) * 8
    if operation in ("wrapKey", "unwrapKey"):
        if alg != f"A{bits}KW":
            raise bad_parameter(f"Algorithm '{alg}' is not supported for a {bits}-bit oct key; use A{bits}KW.")
        try:
            if operation == "wrapKey":
                return {"value": b64url(aes_key_wrap(key, value))}
            return {"value": b64url(aes_key_unwrap(key, value))}
        except (ValueError, InvalidUnwrap) as exc:
            raise bad_parameter(f"The {operation} operation failed for this value.") from exc
    if alg != f"A{bits}GCM":
        raise bad_parameter(f"Algorithm '{alg}' is not supported for a {bits}-bit oct key; use A{bits}GCM.")
    aad = unb64url(doc["aad"], "aad") if doc.get("aad") is not None else None
    gcm = AESGCM(key)
    if operation == "encrypt":
        if doc.get("iv") is not None:
            raise bad_parameter("The iv for AES-GCM encryption is generated by the service; do not send one.")
        iv = os.urandom(12)
        sealed = gcm.encrypt(iv, value, aad)
        result = {"value": b64url(sealed[:-16]), "iv": b64url(iv), "tag": b64url(sealed[-16:])}
        return result | ({"aad": doc["aad"]} if aad is not None else {})
    iv, tag = unb64url(doc.get("iv"), "iv"), unb64url(doc.get("tag"), "tag")
    try:
        return {"value": b64url(gcm.decrypt(iv, value + tag, aad))}
    except (InvalidTag, ValueError) as exc:
        raise bad_parameter("The decrypt operation failed: the ciphertext, iv, tag or aad is wrong.") from exc


def key_operation(operation: str, material: Material, doc: dict[str, Any]) -> dict[str, Any]:
    """Run ``encrypt``/``decrypt``/``wrapKey``/``unwrapKey`` with a ``KeyOperationsParameters`` body."""
    alg = doc.get("alg")
    if not isinstance(alg, str) or not alg:
        raise bad_parameter("Property alg is required.")
    value = unb64url(doc.get("value"), "value")
    if isinstance(material, rsa.RSAPrivateKey):
        return _rsa_operation(operation, alg, material, value)
    if isinstance(material, bytes):
        return _oct_operation(operation, alg, material, value, doc)
    raise bad_parameter(f"Operation {operation} is not supported for an EC key.")
