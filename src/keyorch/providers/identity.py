"""The name a managed key has in each kind of keystore (UKO's ``label_in_keystore``), from the same functions
the adapters name keys with, so what the API shows is what the provider holds."""

from __future__ import annotations

from keyorch.domain.models import KeystoreType
from keyorch.providers.aws_wire import alias_name
from keyorch.providers.azure_wire import key_name_for, name_from_key_id
from keyorch.providers.errors import InvalidRequest
from keyorch.providers.google_wire import crypto_key_id
from keyorch.providers.ibm_wire import alias_for, key_name


def label_in_keystore(kind: KeystoreType, managed_key_id: str, name: str, recorded: str | None = None) -> str:
    """AWS KMS: the key's alias; Azure Key Vault and Cloud KMS: the key's name; Key Protect: the key's name (its
    alias carries the identity). ``recorded`` is the target's record of it (fixed when the key was made, from the
    template's naming scheme); a target recorded before that has none and is named by keyorch's identity
    ``keyorch-<id>``, or by ``name`` (the naming scheme applied to the label) where the id cannot form a provider
    name (the adapter refuses such a key, so no key of that name exists)."""
    if recorded is not None:
        return recorded
    try:
        match kind:
            case KeystoreType.AWS_KMS:
                return alias_name(managed_key_id)
            case KeystoreType.AZURE_KEY_VAULT:
                return key_name_for(managed_key_id)
            case KeystoreType.GOOGLE_KMS:
                return crypto_key_id(managed_key_id)
            case KeystoreType.IBM_KEY_PROTECT:
                return key_name(name, alias_for(managed_key_id))
    except InvalidRequest:
        return name


def key_identity(kind: KeystoreType, key_id_in_keystore: str) -> str:
    """One form of a key's id in a keystore of type ``kind``, whichever form a target recorded: Azure names are
    case-insensitive and may be recorded as a ``kid`` URL, Cloud KMS ids as a full resource name or a bare
    cryptoKeyId (a keystore is one key ring); AWS and Key Protect ids are compared without case."""
    match kind:
        case KeystoreType.AZURE_KEY_VAULT:
            return (name_from_key_id(key_id_in_keystore) or key_id_in_keystore).lower()
        case KeystoreType.GOOGLE_KMS:
            return key_id_in_keystore.rpartition("/cryptoKeys/")[2] or key_id_in_keystore
        case _:
            return key_id_in_keystore.lower()
