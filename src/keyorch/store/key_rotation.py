"""``keyorch master-key rotate``: one transaction re-encrypts every stored credential under the new master key,
keeps the old chain key for the records it sealed (store/audit_keys.py), records the new key's check value,
and appends the rotation's own audit record, the first one sealed with the new key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from keyorch.crypto import MasterKey
from keyorch.domain.errors import ConfigurationError, InvalidInput
from keyorch.store import audit_chain
from keyorch.store.audit_keys import HEAD_ROW_ID, chain_key_bytes, insert_earlier_key, read_head, requires_master_key
from keyorch.store.schema import audit_chain as audit_head
from keyorch.store.schema import keystores


async def rotate(
    conn: AsyncConnection, old: MasterKey, new: MasterKey, record: dict[str, Any]
) -> tuple[int, audit_chain.Anchor]:
    """Rotate from ``old`` (the database's key, checked) to ``new``; ``record`` is the rotation's audit row
    (its ``detail`` is filled in here). Returns (credentials re-encrypted, the head after the rotation's record).
    The whole chain must verify with ``old`` first: a broken chain is not carried over to a new key."""
    if new.check_value() == old.check_value():
        raise InvalidInput("--new-key-file holds the current master key; give a new one", target="new_key_file")
    head = await read_head(conn, for_update=True)  # taken first: no append slips in between verify and rotate
    if head is None:
        raise audit_chain.AuditWriteFailed("the audit chain is not initialized; run `keyorch init` first")
    if not requires_master_key(head):
        raise ConfigurationError(
            "this database has no master key recorded yet, so there is none to rotate: run `keyorch init` with "
            "KEYORCH_MASTER_KEY_FILE set to record it"
        )
    await audit_chain.verify(conn, old)
    stored = (
        await conn.execute(select(keystores.c.id, keystores.c.credentials).where(keystores.c.credentials.is_not(None)))
    ).all()
    for keystore_id, blob in stored:
        reencrypted = new.encrypt(old.decrypt(bytes(blob), keystore_id), keystore_id)
        await conn.execute(update(keystores).where(keystores.c.id == keystore_id).values(credentials=reencrypted))
    seq = int(head["last_seq"]) + 1
    await insert_earlier_key(conn, seq, chain_key_bytes(new), chain_key_bytes(old))
    await conn.execute(update(audit_head).where(audit_head.c.id == HEAD_ROW_ID).values(key_check=new.check_value()))
    detail = (
        f"re-encrypted the stored credentials of {len(stored)} keystore(s); records from seq {seq} on are sealed "
        "with the new master key"
    )
    anchor = await audit_chain.append(conn, {**record, "detail": detail}, new)
    return len(stored), anchor
