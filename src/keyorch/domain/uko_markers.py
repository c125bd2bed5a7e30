"""What UKO left on the keys it distributed to each kind of keystore, for telling them apart from others.

IBM's public documentation of UKO says how UKO *names* a key in a keystore (its template's naming scheme gives
the ``label_in_keystore``: the AWS alias, the Azure key name, the Cloud KMS cryptoKeyId, the Key Protect name)
and that it *imports* the key material it generated in its own HSMs (AWS: ``CreateKey`` with ``Origin
EXTERNAL``, ``GetParametersForImport``, ``ImportKeyMaterial``; Azure: the ``import`` permission and the
``EKMF-BYOK-KEK-FOR-IMPORT`` key it makes in every vault it connects to). It does not say which tags or labels
UKO sets. keyorch therefore assumes the marks below (docs/migrating-from-uko.md, "What keyorch assumes about
UKO's keys"): one place, so that a correction from a real UKO estate is one edit. The fakes' ``uko`` seed shortcut
writes exactly these marks, and the scan (:mod:`keyorch.service.inventory`) reads exactly these.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyorch.domain.models import KeystoreType

#: ASSUMED: the tag (AWS, Azure) or label (Cloud KMS) holding the UKO managed key's id on its key.
UKO_ID_TAG = "uko-managed-key-id"
#: ASSUMED: Key Protect keys carry the UKO managed key's id in their description, after this text.
UKO_DESCRIPTION_PREFIX = "Managed by IBM Unified Key Orchestrator, managed key "
#: Documented: the key UKO makes in every Azure key vault it connects to, to import keys with (not a managed key).
UKO_AZURE_IMPORT_KEK = "EKMF-BYOK-KEK-FOR-IMPORT"
#: Documented: UKO imports the key material it generated, so its AWS keys have this origin.
UKO_AWS_ORIGIN = "EXTERNAL"

#: keystore types whose keys carry :data:`UKO_ID_TAG` as a tag or label (Key Protect: in the description)
TAGGED_KINDS = frozenset({KeystoreType.AWS_KMS, KeystoreType.AZURE_KEY_VAULT, KeystoreType.GOOGLE_KMS})


def uko_description(managed_key_id: str) -> str:
    """The description UKO is assumed to give a Key Protect key it made for ``managed_key_id``."""
    return UKO_DESCRIPTION_PREFIX + managed_key_id


def uko_id_from(kind: KeystoreType, labels: Mapping[str, str], description: str | None) -> str | None:
    """The UKO managed key id a key's marks name, or ``None`` when it carries none."""
    if kind in TAGGED_KINDS:
        found = labels.get(UKO_ID_TAG)
        return found or None
    if description and description.startswith(UKO_DESCRIPTION_PREFIX):
        return description[len(UKO_DESCRIPTION_PREFIX) :].strip() or None
    return None
