from __future__ import annotations

from datetime import UTC, datetime

from keyorch.domain.models import (
    CredentialsMode,
    DriftPolicy,
    Keystore,
    KeystoreStatus,
    KeystoreType,
    ManagedKey,
    Target,
    Vault,
)
from keyorch.domain.states import KeyState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_vault(dual_auth: bool = False) -> Vault:
    return Vault(id="v1", name="payments", dual_auth=dual_auth, created_at=T0, updated_at=T0)


def make_keystore(ks_id: str = "ks1") -> Keystore:
    return Keystore(
        id=ks_id,
        vault_id="v1",
        name=f"name-{ks_id}",
        type=KeystoreType.AWS_KMS,
        settings={"region": "us-east-1"},
        credentials_mode=CredentialsMode.ENVIRONMENT,
        drift_policy=DriftPolicy.FLAG,
        status=KeystoreStatus.CONNECTED,
        created_at=T0,
        updated_at=T0,
    )


def make_key(state: KeyState, key_id: str = "k1", keystores: tuple[str, ...] = ("ks1",)) -> ManagedKey:
    return ManagedKey(
        id=key_id,
        label=f"label-{key_id}",
        name=f"label-{key_id}",
        vault_id="v1",
        template_id="t1",
        algorithm="aes",
        size=256,
        state=state,
        created_at=T0,
        updated_at=T0,
        targets=tuple(Target(keystore_id=k) for k in keystores),
    )
