"""Which algorithm and size each keystore type can hold: the one table templates are checked against,
kept in line with what each adapter can create."""

from __future__ import annotations

import pytest

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import KeystoreType
from keyorch.domain.validation import ALGORITHM_SUPPORT, check_algorithm


@pytest.mark.parametrize(
    ("kind", "algorithm", "size", "allowed"),
    [
        (KeystoreType.AWS_KMS, "aes", 256, True),
        (KeystoreType.AWS_KMS, "aes", 128, False),
        (KeystoreType.AWS_KMS, "rsa", 3072, True),
        (KeystoreType.AZURE_KEY_VAULT, "aes", 192, True),  # on a Managed HSM (checked by the adapter)
        (KeystoreType.GOOGLE_KMS, "aes", 192, False),
        (KeystoreType.GOOGLE_KMS, "rsa", 4096, True),
        (KeystoreType.IBM_KEY_PROTECT, "aes", 256, True),
        (KeystoreType.IBM_KEY_PROTECT, "aes", 128, False),  # Key Protect generates AES-256 root keys only
        (KeystoreType.IBM_KEY_PROTECT, "rsa", 2048, False),
    ],
)
def test_each_keystore_type_holds_only_what_its_adapter_creates(
    kind: KeystoreType, algorithm: str, size: int, allowed: bool
) -> None:
    if allowed:
        assert check_algorithm(algorithm.upper(), size, {"ks": kind}) == (algorithm, size)
        return
    with pytest.raises(InvalidInput) as raised:
        check_algorithm(algorithm, size, {"ks": kind})
    assert raised.value.target == "keystore"
    assert f"cannot hold {algorithm} {size} keys" in raised.value.message and "it supports" in raised.value.message


def test_every_keystore_type_has_a_row() -> None:
    assert set(ALGORITHM_SUPPORT) == set(KeystoreType)


@pytest.mark.parametrize(("algorithm", "size", "field"), [("des", 64, "algorithm"), ("aes", 512, "size")])
def test_unknown_algorithm_or_size_names_the_field(algorithm: str, size: int, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_algorithm(algorithm, size, {})
    assert raised.value.target == field and repr(algorithm if field == "algorithm" else size) in raised.value.message
