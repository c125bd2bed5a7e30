"""The tamper-evident audit chain: each record is sealed with an HMAC-SHA256 over its content and
the previous record's HMAC, and the one-row ``audit_chain`` table holds the head (last seq and
HMAC, itself sealed), so an edited record, a record deleted in the middle and records cut off
the tail are all found by :func:`verify`.

The key: with a master key configured, HKDF-SHA256(master key, info ``b"keyorch audit chain"``).
Without one, a random 32-byte key kept in the ``audit_chain`` row. That stored key detects edits
and deletions made by anyone who cannot also read that row (an application bug, a careless manual
fix, a restored partial backup); someone who can read it can forge a consistent chain. Configuring
the master key is stronger: it never lives in the database. Once a record is sealed with the
master key, later records must be too (an append without it is refused), and a verify that is
given the master key requires the last record to be sealed with it, so the chain cannot be quietly
rewritten with the stored key. (Right after the master key is first configured, verify with it
fails until the next change is recorded.)

Appends serialize on the head: SQLite's ``BEGIN IMMEDIATE`` already holds the write lock, and on
PostgreSQL the head row is read ``FOR UPDATE``, in the same transaction as the audited change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import TableClause

from keyorch.crypto import MasterKey
from keyorch.domain.errors import ConfigurationError, KeyorchError
from keyorch.store.schema import audit_chain, audit_log

ChainKey = Literal["master_key", "stored_key"]

HKDF_INFO = b"keyorch audit chain"
GENESIS = ""  # the "previous HMAC" of the first record
_HEAD_ROW_ID = 1
_PAGE = 2000


class AuditWriteFailed(KeyorchError):
    """A change is refused because its audit record cannot be written."""

    exit_code = 3
    http_status = 503
    code = "audit_unavailable"


class AuditChainBroken(KeyorchError):
    """``audit verify`` found a record that was edited, deleted or cut off."""

    exit_code = 3
    http_status = 500
    code = "audit_chain_broken"

    def __init__(self, message: str, *, seq: int) -> None:
        super().__init__(message, target="audit")
        self.seq = seq


@dataclass(frozen=True)
class Verified:
    records: int
    sealed_with_master_key: int
    sealed_with_stored_key: int
    last_seq: int

    def as_json(self) -> dict[str, int]:
        return {
            "records_verified": self.records,
            "sealed_with_master_key": self.sealed_with_master_key,
            "sealed_with_stored_key": self.sealed_with_stored_key,
            "last_seq": self.last_seq,
        }


def chain_key_bytes(master_key: MasterKey) -> bytes:
    return master_key.derive(HKDF_INFO)


def record_content(row: Mapping[Any, Any]) -> bytes:
    """The canonical bytes an HMAC covers: every column of the record but the HMAC itself."""
    at = row["at"]
    assert isinstance(at, datetime)
    doc = {
        "v": 1,
        "seq": row["seq"],
        "prev_seq": row["prev_seq"],
        "at": at.astimezone(UTC).isoformat(),
        "user": row["user"],
        "role": row["role"],
        "source": row["source"],
        "action": row["action"],
        "object_type": row["object_type"],
        "object_id": row["object_id"],
        "outcome": row["outcome"],
        "before": row["before"],
        "after": row["after"],
        "detail": row["detail"],
        "chain_key": row["chain_key"],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def record_hmac(key: bytes, row: Mapping[Any, Any], prev_hmac: str) -> str:
    return hmac.new(key, prev_hmac.encode("ascii") + b"\n" + record_content(row), hashlib.sha256).hexdigest()


def head_seal(key: bytes, last_seq: int, last_hmac: str) -> str:
    return hmac.new(key, f"keyorch audit head v1\n{last_seq}\n{last_hmac}".encode("ascii"), hashlib.sha256).hexdigest()


def new_stored_key() -> bytes:
    return os.urandom(32)


# --- writing -------------------------------------------------------------------------------


async def append(conn: AsyncConnection, row: dict[str, Any], master_key: MasterKey | None) -> int:
    """Seal and insert one audit row (without seq) at the head of the chain; return its seq."""
    head = (
        (await conn.execute(select(audit_chain).where(audit_chain.c.id == _HEAD_ROW_ID).with_for_update()))
        .mappings()
        .first()
    )
    if head is None:
        raise AuditWriteFailed("the audit chain is not initialized; run `keyorch init` to migrate the database")
    if master_key is None and head["chain_key"] == "master_key":
        raise AuditWriteFailed(
            "the audit chain is sealed with the master key, which is not configured here; set KEYORCH_MASTER_KEY "
            "or KEYORCH_MASTER_KEY_FILE"
        )
    chain_key: ChainKey = "stored_key" if master_key is None else "master_key"
    key = bytes(head["stored_key"]) if master_key is None else chain_key_bytes(master_key)
    seq = int(head["last_seq"]) + 1
    sealed = {**row, "seq": seq, "prev_seq": head["last_seq"] or None, "chain_key": chain_key}
    sealed["hmac"] = record_hmac(key, sealed, head["last_hmac"])
    await conn.execute(insert(audit_log).values(**sealed))
    await conn.execute(
        update(audit_chain)
        .where(audit_chain.c.id == _HEAD_ROW_ID)
        .values(
            last_seq=seq, last_hmac=sealed["hmac"], chain_key=chain_key, head_hmac=head_seal(key, seq, sealed["hmac"])
        )
    )
    return seq


def seal_existing(conn: Connection, log: TableClause, chain: TableClause) -> None:
    """Migration 0003: create the head row and seal every record written before the chain existed.

    ``log`` and ``chain`` describe the two tables as that migration leaves them, so later
    migrations may add columns without changing what this one does.
    """
    key = new_stored_key()
    prev_seq, prev_hmac = 0, GENESIS
    for row in conn.execute(select(log).order_by(log.c.seq)).mappings().all():
        sealed = {**row, "role": None, "prev_seq": prev_seq or None, "chain_key": "stored_key"}
        digest = record_hmac(key, sealed, prev_hmac)
        conn.execute(
            update(log)
            .where(log.c.seq == row["seq"])
            .values(prev_seq=sealed["prev_seq"], chain_key="stored_key", hmac=digest)
        )
        prev_seq, prev_hmac = row["seq"], digest
    conn.execute(
        insert(chain).values(
            id=_HEAD_ROW_ID,
            stored_key=key,
            last_seq=prev_seq,
            last_hmac=prev_hmac,
            chain_key="stored_key",
            head_hmac=head_seal(key, prev_seq, prev_hmac),
        )
    )


# --- verifying -----------------------------------------------------------------------------


async def _rows(conn: AsyncConnection) -> AsyncIterator[Mapping[Any, Any]]:
    after = -1
    while True:
        page = (
            (
                await conn.execute(
                    select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(_PAGE)
                )
            )
            .mappings()
            .all()
        )
        for row in page:
            yield row
        if len(page) < _PAGE:
            return
        after = page[-1]["seq"]


class _Walker:
    def __init__(self, stored_key: bytes, master_key: MasterKey | None) -> None:
        self.stored_key = stored_key
        self.master = chain_key_bytes(master_key) if master_key is not None else None
        self.prev_seq, self.prev_hmac = 0, GENESIS
        self.counts = {"master_key": 0, "stored_key": 0}
        self.last_key = stored_key

    def key_for(self, row: Mapping[Any, Any]) -> bytes:
        seq = row["seq"]
        if row["chain_key"] == "stored_key":
            if self.counts["master_key"]:
                raise AuditChainBroken(
                    f"audit record {seq} is sealed with the stored key after records sealed with the master key: "
                    "the chain was rewritten from there on",
                    seq=seq,
                )
            return self.stored_key
        if row["chain_key"] == "master_key":
            if self.master is None:
                raise ConfigurationError(
                    f"audit records from seq {seq} on are sealed with the master key; configure KEYORCH_MASTER_KEY "
                    "(or KEYORCH_MASTER_KEY_FILE) to verify them"
                )
            return self.master
        raise AuditChainBroken(f"audit record {seq} was edited: it names no known chain key", seq=seq)

    def check(self, row: Mapping[Any, Any]) -> None:
        seq = row["seq"]
        key = self.key_for(row)
        expected = record_hmac(key, {**row, "prev_seq": self.prev_seq or None}, self.prev_hmac)
        if not hmac.compare_digest(str(row["hmac"] or ""), expected):
            raise AuditChainBroken(self._why(row), seq=seq)
        self.counts[row["chain_key"]] += 1
        self.prev_seq, self.prev_hmac, self.last_key = seq, expected, key

    def _why(self, row: Mapping[Any, Any]) -> str:
        seq = row["seq"]
        linked_to = row["prev_seq"] or 0
        if linked_to != self.prev_seq and isinstance(linked_to, int) and self.prev_seq < linked_to < seq:
            where = f"between {self.prev_seq} and {seq}" if self.prev_seq else f"before {seq}"
            return (
                f"audit record {seq} fails verification: it was chained to record {linked_to}, which is missing "
                f"(records {where} were deleted)"
            )
        hint = ""
        if row["chain_key"] == "master_key" and not self.counts["master_key"]:
            hint = " (or the configured master key is not the one it was sealed with)"
        return f"audit record {seq} fails verification: it was edited, or the record before it was removed{hint}"

    def check_head(self, head: Mapping[Any, Any]) -> None:
        last_seq, last_hmac = int(head["last_seq"]), str(head["last_hmac"])
        if last_seq > self.prev_seq:
            raise AuditChainBroken(
                f"audit records after seq {self.prev_seq} were deleted: the chain head records seq {last_seq}",
                seq=self.prev_seq + 1,
            )
        if last_seq < self.prev_seq or not hmac.compare_digest(last_hmac, self.prev_hmac):
            raise AuditChainBroken(
                f"the audit chain head (seq {last_seq}) does not match the last record (seq {self.prev_seq}): "
                "records were added or the head was edited outside keyorch",
                seq=self.prev_seq,
            )
        if self.master is not None and last_seq and self.last_key != self.master:
            raise AuditChainBroken(
                f"the audit chain (last seq {last_seq}) is not sealed with the configured master key: it was "
                "rewritten with the stored key, or no change has been recorded since the master key was configured "
                "(the next change seals it)",
                seq=last_seq,
            )
        if not hmac.compare_digest(str(head["head_hmac"]), head_seal(self.last_key, last_seq, last_hmac)):
            raise AuditChainBroken(
                f"the audit chain head (seq {last_seq}) was edited outside keyorch",
                seq=last_seq,
            )


async def verify(conn: AsyncConnection, master_key: MasterKey | None) -> Verified:
    """Walk the whole chain; raise AuditChainBroken naming the first bad seq."""
    head = (await conn.execute(select(audit_chain).where(audit_chain.c.id == _HEAD_ROW_ID))).mappings().first()
    if head is None:
        raise AuditChainBroken("the audit chain head is missing: the audit_chain row was deleted", seq=0)
    walker = _Walker(bytes(head["stored_key"]), master_key)
    async for row in _rows(conn):
        walker.check(row)
    walker.check_head(head)
    return Verified(
        records=sum(walker.counts.values()),
        sealed_with_master_key=walker.counts["master_key"],
        sealed_with_stored_key=walker.counts["stored_key"],
        last_seq=walker.prev_seq,
    )
