"""Audit records of the reconciler's own provider calls: every mutating call (create, enable,
disable, schedule destruction) gets a record in the same tamper-evident chain as users' changes,
written in the transaction that records the call's result.

Actor ``reconciler`` (source ``reconciler``); the record names the key, the keystore, the provider's
key id, the outcome (``succeeded`` or ``failed`` with the provider's error, which never carries a
secret), the desired-state generation acted on, and the lease (holder and epoch) the call was made
under. A call interrupted by a crash has no record here; its intent stays in the journal
(``intents``) and the next reconcile observes what it did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from keyorch.audit import AuditRecord
from keyorch.crypto import MasterKey
from keyorch.domain.models import Keystore, ManagedKey
from keyorch.reconcile.planner import Action
from keyorch.store.leases import Lease
from keyorch.store.repository import Transaction

RECONCILER_USER = "reconciler"


@dataclass(frozen=True)
class ProviderCall:
    """One mutating call sent to a keystore, and how it ended (``error`` is None on success)."""

    keystore_id: str
    action: Action
    key_id_in_keystore: str | None
    error: str | None


async def audit_provider_calls(
    tx: Transaction,
    calls: Sequence[ProviderCall],
    key: ManagedKey,
    keystores: Mapping[str, Keystore],
    lease: Lease,
    now: datetime,
    master_key: MasterKey | None,
) -> None:
    for call in calls:
        keystore = keystores[call.keystore_id]
        detail = {
            "keystore_id": keystore.id,
            "keystore": keystore.name,
            "keystore_type": keystore.type.value,
            "key_id_in_keystore": call.key_id_in_keystore,
            "generation": key.generation,
            "desired_state": key.state.value,
            "lease": {"holder": lease.holder, "epoch": lease.epoch},
        }
        if call.error is not None:
            detail["error"] = call.error[:1000]
        await tx.add_audit(
            AuditRecord(
                at=now,
                user=RECONCILER_USER,
                source="reconciler",
                action=f"provider.{call.action.value}",
                object_type="key",
                object_id=key.id,
                outcome="succeeded" if call.error is None else "failed",
                detail=json.dumps(detail, sort_keys=True, separators=(",", ":")),
            ),
            master_key=master_key,
        )
