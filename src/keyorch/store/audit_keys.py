"""Which master key a database belongs to, and the chain keys of the master keys it had before.

**Key-check value.** ``audit_chain.key_check`` holds :meth:`MasterKey.check_value` of the database's
master key. Every command given a master key compares it first and refuses another key (exit 2)
before anything is written, so a wrong key can never seal a record that the right key would later
find "edited". The value is recorded by ``keyorch init`` run with a master key, or else by the first
change made with one. A database that was already sealed with a master key before check values
existed (schema 0004 and older) gets its value from the first change made with a key that verifies
the seal of the chain's head; a key that does not is refused like any other wrong key.

Once the check value is recorded, the head of the chain is sealed with the master key, and every
change needs it (:class:`MasterKeyRequired` without one).

**Rotation.** ``keyorch master-key rotate`` keeps the old records as they were sealed: the chain key
of the old master key is kept in ``audit_chain_keys`` under the seq of the rotation's own record
(the first one sealed with the new key), AES-256-GCM-encrypted under a subkey of the new chain key.
So the newest master key alone verifies the whole chain, and the database never holds an old master
key itself (a chain key is an HMAC subkey: it cannot decrypt credentials).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from keyorch.crypto import MasterKey
from keyorch.domain.errors import ConfigurationError
from keyorch.store.schema import audit_chain, audit_chain_keys

HEAD_ROW_ID = 1
WRAP_INFO = b"keyorch audit chain key wrap"
CHAIN_INFO = b"keyorch audit chain"
_SET_IT = "set KEYORCH_MASTER_KEY_FILE to the file that holds it (or KEYORCH_MASTER_KEY)"


class MasterKeyRequired(ConfigurationError):
    """The database has a master key and none is configured here."""

    http_status = 503
    code = "master_key_required"

    def __init__(self, what: str = "this command") -> None:
        super().__init__(
            f"this database's audit chain is sealed with its master key, which is not configured, so {what} "
            f"cannot record anything: {_SET_IT}",
            target="master_key",
        )


class MasterKeyMismatch(ConfigurationError):
    """The configured master key is not the database's."""

    http_status = 503
    code = "master_key_mismatch"

    def __init__(self, why: str) -> None:
        super().__init__(
            f"the configured master key (KEYORCH_MASTER_KEY_FILE or KEYORCH_MASTER_KEY) is not this database's: "
            f"{why}; nothing was done",
            target="master_key",
        )


def chain_key_bytes(master_key: MasterKey) -> bytes:
    return master_key.derive(CHAIN_INFO)


def head_seal(key: bytes, last_seq: int, last_hmac: str) -> str:
    """The seal of the chain's head: HMAC over its last seq and HMAC."""
    return hmac.new(key, f"keyorch audit head v1\n{last_seq}\n{last_hmac}".encode("ascii"), hashlib.sha256).hexdigest()


def requires_master_key(head: Mapping[Any, Any]) -> bool:
    """Whether changes to this database need its master key (it has a check value, or a master-sealed head)."""
    return head["key_check"] is not None or head["chain_key"] == "master_key"


async def read_head(conn: AsyncConnection, *, for_update: bool = False) -> Mapping[Any, Any] | None:
    stmt = select(audit_chain).where(audit_chain.c.id == HEAD_ROW_ID)
    return (await conn.execute(stmt.with_for_update() if for_update else stmt)).mappings().first()


def check_key(head: Mapping[Any, Any], master_key: MasterKey) -> None:
    """Refuse ``master_key`` if it is not the database's (no write)."""
    if head["key_check"] is not None:
        if not hmac.compare_digest(str(head["key_check"]), master_key.check_value()):
            raise MasterKeyMismatch("its check value differs from the one recorded at `keyorch init`")
        return
    if head["chain_key"] == "master_key":
        expected = head_seal(chain_key_bytes(master_key), int(head["last_seq"]), str(head["last_hmac"]))
        if not hmac.compare_digest(str(head["head_hmac"]), expected):
            raise MasterKeyMismatch(
                "it does not verify the seal of the audit chain's head (another key sealed it, or the head was edited)"
            )


async def check_master_key(conn: AsyncConnection, master_key: MasterKey | None, *, required: bool) -> None:
    """Before a command does anything: a configured key must be the database's; with ``required`` (the daemon),
    a database that has a master key must have it configured. A database not yet migrated passes."""
    head = await read_head(conn)
    if head is None:
        return
    if master_key is not None:
        check_key(head, master_key)
    elif required and requires_master_key(head):
        raise MasterKeyRequired("the daemon")


def wrap(new_chain_key: bytes, old_chain_key: bytes, seq: int) -> bytes:
    return MasterKey(_wrapping_key(new_chain_key)).encrypt(old_chain_key, _wrap_aad(seq))


async def earlier_chain_keys(conn: AsyncConnection, current: bytes) -> list[tuple[int, bytes]]:
    """``[(first seq, chain key), …]`` oldest first: from each rotation's seq on, records are sealed with the key
    after it; before the first rotation, with the first master key's. Raises ``ValueError(seq)`` when the key
    kept for a rotation does not decrypt (it was edited)."""
    rows = (await conn.execute(select(audit_chain_keys).order_by(audit_chain_keys.c.seq.desc()))).mappings().all()
    segments = []
    key = current
    for row in rows:
        seq = int(row["seq"])
        segments.append((seq, key))
        try:
            key = MasterKey(_wrapping_key(key)).decrypt(bytes(row["wrapped_key"]), _wrap_aad(seq))
        except ConfigurationError:
            raise ValueError(seq) from None
    segments.append((0, key))
    return segments[::-1]


async def insert_earlier_key(conn: AsyncConnection, seq: int, new_chain_key: bytes, old_chain_key: bytes) -> None:
    await conn.execute(insert(audit_chain_keys).values(seq=seq, wrapped_key=wrap(new_chain_key, old_chain_key, seq)))


def _wrapping_key(chain_key: bytes) -> bytes:
    return MasterKey(chain_key).derive(WRAP_INFO)


def _wrap_aad(seq: int) -> str:
    return f"keyorch audit chain key before seq {seq}"
