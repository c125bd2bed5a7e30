"""The tamper-evident audit chain: each record is sealed with an HMAC-SHA256 over its content and
the previous record's HMAC, and the one-row ``audit_chain`` table holds the head (last seq and
HMAC, itself sealed), so an edited record, a record deleted in the middle and records cut off
the tail are all found by :func:`verify`.

The key: with a master key configured, HKDF-SHA256(master key, info ``b"keyorch audit chain"``).
Without one, a random 32-byte key kept in the ``audit_chain`` row. That stored key detects edits
and deletions made by anyone who cannot also read that row (an application bug, a careless manual
fix, a restored partial backup); someone who can read it can forge a consistent chain. Configuring
the master key is stronger: it never lives in the database. Once a master key is in use (its
check value is recorded, see store/audit_keys.py), the head is always sealed with it, every append
needs it, and a verify that has it refuses a head sealed with the stored key, even an empty one.

What no seal inside the database can show is a rollback: an older, consistent state (a restored
backup, or an old head row put back after the tail was cut). For that, every accepted change logs
its head as an anchor (``seq:hmac``, the event ``audit chain head``), ``keyorch audit anchor`` prints
the verified head, and ``verify(anchor=…)`` proves the trail still holds exactly that record.

Time never runs backwards along the chain: an append dated before the record it follows is dated
at that record's time instead (a warning is logged), and verify names a record older than its
predecessor.

Appends serialize on the head: SQLite's ``BEGIN IMMEDIATE`` already holds the write lock, and on
PostgreSQL the head row is read ``FOR UPDATE``, in the same transaction as the audited change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import TableClause

from keyorch.crypto import MasterKey
from keyorch.domain.errors import ConfigurationError, InvalidInput, KeyorchError
from keyorch.logs import get_logger
from keyorch.store.audit_keys import (
    HEAD_ROW_ID,
    MasterKeyRequired,
    chain_key_bytes,
    check_key,
    earlier_chain_keys,
    head_seal,
    read_head,
    requires_master_key,
)
from keyorch.store.schema import audit_chain, audit_log

ChainKey = Literal["master_key", "stored_key"]

GENESIS = ""  # the "previous HMAC" of the first record
_HEAD_ROW_ID = HEAD_ROW_ID
_PAGE = 2000
_HEX = frozenset("0123456789abcdef")


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
    last_hmac: str = field(default=GENESIS, compare=False)

    @property
    def anchor(self) -> Anchor | None:
        """The verified head, to keep outside the database (None for an empty chain)."""
        return Anchor(self.last_seq, self.last_hmac) if self.last_seq else None

    def as_json(self) -> dict[str, int | str | None]:
        return {
            "records_verified": self.records,
            "sealed_with_master_key": self.sealed_with_master_key,
            "sealed_with_stored_key": self.sealed_with_stored_key,
            "last_seq": self.last_seq,
            "anchor": str(self.anchor) if self.anchor else None,
        }


@dataclass(frozen=True)
class Anchor:
    """A head of the chain as it was: record ``seq`` had the HMAC ``hmac``. Written ``SEQ:HMAC``."""

    seq: int
    hmac: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hmac}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        seq, sep, digest = text.strip().partition(":")
        shown = repr(text) if len(text) <= 90 else repr(text[:87]) + "..."
        if not (sep and seq.isascii() and seq.isdigit() and len(seq) <= 18 and int(seq) > 0):
            raise InvalidInput(
                f"--anchor {shown} is not SEQ:HMAC with a record number of 1 or more (as `keyorch audit anchor` "
                "prints it)",
                target="anchor",
            )
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise InvalidInput(
                f"--anchor {shown} is not SEQ:HMAC: the HMAC must be 64 lowercase hexadecimal digits", target="anchor"
            )
        return cls(int(seq), digest)


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


def new_stored_key() -> bytes:
    return os.urandom(32)


# --- writing -------------------------------------------------------------------------------


async def append(conn: AsyncConnection, row: dict[str, Any], master_key: MasterKey | None) -> Anchor:
    """Seal and insert one audit row (without seq) at the head of the chain; return the new head.

    With a master key, the key is checked against the database's first (a wrong one is refused before
    anything is written) and its check value recorded if the database has none yet."""
    head = await read_head(conn, for_update=True)
    if head is None:
        raise AuditWriteFailed("the audit chain is not initialized; run `keyorch init` to migrate the database")
    values: dict[str, Any] = {}
    if master_key is None:
        if requires_master_key(head):
            raise MasterKeyRequired(f"this {row['action']}")
        chain_key: ChainKey = "stored_key"
        key = bytes(head["stored_key"])
    else:
        check_key(head, master_key)
        if head["key_check"] is None:
            values["key_check"] = master_key.check_value()
        chain_key, key = "master_key", chain_key_bytes(master_key)
    seq = int(head["last_seq"]) + 1
    sealed = {**row, "seq": seq, "prev_seq": head["last_seq"] or None, "chain_key": chain_key}
    sealed["at"] = await _not_before_previous(conn, head, row["at"])
    sealed["hmac"] = record_hmac(key, sealed, head["last_hmac"])
    await conn.execute(insert(audit_log).values(**sealed))
    await conn.execute(
        update(audit_chain)
        .where(audit_chain.c.id == _HEAD_ROW_ID)
        .values(
            last_seq=seq,
            last_hmac=sealed["hmac"],
            chain_key=chain_key,
            head_hmac=head_seal(key, seq, sealed["hmac"]),
            **values,
        )
    )
    return Anchor(seq, sealed["hmac"])


async def _not_before_previous(conn: AsyncConnection, head: Mapping[Any, Any], at: datetime) -> datetime:
    """``at``, or the previous record's time if that is later (a clock that went back never dates a record
    before the one it follows)."""
    if not head["last_seq"]:
        return at
    previous = (
        await conn.execute(select(audit_log.c.at).where(audit_log.c.seq == head["last_seq"]))
    ).scalar_one_or_none()
    if not isinstance(previous, datetime) or previous <= at:
        return at
    get_logger(component="audit").warning(
        "the clock is behind the last audit record; this record gets that record's time",
        clock=at.isoformat(),
        previous_record_at=previous.isoformat(),
        previous_seq=head["last_seq"],
    )
    return previous


async def adopt_master_key(conn: AsyncConnection, master_key: MasterKey) -> bool:
    """Record the master key's check value and seal the head with it (``keyorch init`` with a key);
    True if it was recorded now, False if it already was. A key that is not the database's is refused."""
    head = await read_head(conn, for_update=True)
    if head is None:
        raise AuditWriteFailed("the audit chain is not initialized; run `keyorch init` to migrate the database")
    check_key(head, master_key)
    if head["key_check"] is not None:
        return False
    key = chain_key_bytes(master_key)
    await conn.execute(
        update(audit_chain)
        .where(audit_chain.c.id == _HEAD_ROW_ID)
        .values(
            key_check=master_key.check_value(),
            chain_key="master_key",
            head_hmac=head_seal(key, int(head["last_seq"]), str(head["last_hmac"])),
        )
    )
    return True


def log_heads(heads: list[Anchor]) -> None:
    """After a commit: the newest head, as an anchor, in the log (outside the database)."""
    if heads:
        head = heads[-1]
        get_logger(component="audit").info("audit chain head", seq=head.seq, anchor=str(head))


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
    def __init__(self, stored_key: bytes, master: list[tuple[int, bytes]] | None, anchor: Anchor | None) -> None:
        self.stored_key = stored_key
        self.master = master  # [(first seq, chain key)], oldest first; the last one is the current key's
        self.anchor = anchor
        self.anchor_seen = False
        self.prev_seq, self.prev_hmac = 0, GENESIS
        self.prev_at: datetime | None = None
        self.counts = {"master_key": 0, "stored_key": 0}

    def master_key_for(self, seq: int) -> bytes | None:
        if self.master is None:
            return None
        return next(key for start, key in reversed(self.master) if start <= seq)

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
            key = self.master_key_for(seq)
            if key is None:
                raise ConfigurationError(
                    f"audit records from seq {seq} on are sealed with the master key; configure "
                    "KEYORCH_MASTER_KEY_FILE (or KEYORCH_MASTER_KEY) to verify them"
                )
            return key
        raise AuditChainBroken(f"audit record {seq} was edited: it names no known chain key", seq=seq)

    def check(self, row: Mapping[Any, Any]) -> None:
        seq = row["seq"]
        key = self.key_for(row)
        expected = record_hmac(key, {**row, "prev_seq": self.prev_seq or None}, self.prev_hmac)
        if not hmac.compare_digest(str(row["hmac"] or ""), expected):
            raise AuditChainBroken(self._why(row), seq=seq)
        if self.prev_at is not None and row["at"] < self.prev_at:
            raise AuditChainBroken(
                f"audit record {seq} is dated {row['at'].isoformat()}, before record {self.prev_seq} "
                f"({self.prev_at.isoformat()}): it was written with a clock set back",
                seq=seq,
            )
        if self.anchor is not None and seq == self.anchor.seq:
            if not hmac.compare_digest(expected, self.anchor.hmac):
                raise AuditChainBroken(
                    f"audit record {seq} is not the one anchored at {self.anchor}: the trail up to it was rewritten",
                    seq=seq,
                )
            self.anchor_seen = True
        self.counts[row["chain_key"]] += 1
        self.prev_seq, self.prev_hmac, self.prev_at = seq, expected, row["at"]

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
        if self.anchor is not None and not self.anchor_seen:
            raise AuditChainBroken(
                f"the audit trail no longer holds record {self.anchor.seq} of the anchor {self.anchor}: it ends at "
                f"seq {last_seq}, so records were cut off or the database was rolled back to before the anchor",
                seq=self.anchor.seq,
            )
        key = self._head_key(head)
        if not hmac.compare_digest(str(head["head_hmac"]), head_seal(key, last_seq, last_hmac)):
            raise AuditChainBroken(f"the audit chain head (seq {last_seq}) was edited outside keyorch", seq=last_seq)

    def _head_key(self, head: Mapping[Any, Any]) -> bytes:
        last_seq = int(head["last_seq"])
        if head["chain_key"] == "master_key":
            if self.master is None:
                raise ConfigurationError(
                    "the audit chain's head is sealed with the master key; configure KEYORCH_MASTER_KEY_FILE "
                    "(or KEYORCH_MASTER_KEY) to verify it"
                )
            return self.master[-1][1]
        if head["chain_key"] != "stored_key":
            raise AuditChainBroken(f"the audit chain head (seq {last_seq}) was edited outside keyorch", seq=last_seq)
        if head["key_check"] is not None or self.master is not None:
            raise AuditChainBroken(
                f"the audit chain (last seq {last_seq}) is not sealed with the configured master key: it was "
                "rewritten with the stored key, or no change has been recorded since the master key was configured "
                "(the next change, or `keyorch init` with the key, seals it)",
                seq=last_seq,
            )
        return self.stored_key


async def verify(conn: AsyncConnection, master_key: MasterKey | None, anchor: Anchor | None = None) -> Verified:
    """Walk the whole chain; raise AuditChainBroken naming the first bad seq. With ``anchor``, the record it
    names must still be there with that HMAC (records up to it unchanged, none of them cut off)."""
    head = await read_head(conn)
    if head is None:
        raise AuditChainBroken("the audit chain head is missing: the audit_chain row was deleted", seq=0)
    master = None
    if master_key is not None:
        check_key(head, master_key)
        try:
            master = await earlier_chain_keys(conn, chain_key_bytes(master_key))
        except ValueError as exc:
            seq = int(exc.args[0])
            raise AuditChainBroken(
                f"the chain key kept for the master-key rotation at seq {seq} was edited: the records before it "
                "cannot be verified",
                seq=seq,
            ) from None
    walker = _Walker(bytes(head["stored_key"]), master, anchor)
    async for row in _rows(conn):
        walker.check(row)
    walker.check_head(head)
    return Verified(
        records=sum(walker.counts.values()),
        sealed_with_master_key=walker.counts["master_key"],
        sealed_with_stored_key=walker.counts["stored_key"],
        last_seq=walker.prev_seq,
        last_hmac=walker.prev_hmac,
    )
