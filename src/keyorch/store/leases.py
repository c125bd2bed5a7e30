"""Per-key leases: the claim an actor holds while it acts on a key, so that a key is acted on by one
actor at a time, whatever asked (a daemon worker, an API sync, a CLI one-shot, another replica).

A lease is a row of ``key_leases``: the holder (a token unique to one claim), an epoch that grows
with every new claim of the key, and an expiry. It is claimed in the very transaction that journals
the intents of the provider calls about to be made, and released in the transaction that records
their results; the results are written only while the lease is still the live one (fencing: a holder
that lost its lease, because it was paused, cut off or slow past the expiry, writes nothing and makes
no further call; the engine also stops before each call once the lease's local deadline has passed).

Times: on PostgreSQL the database server's clock decides expiry (``now()``), so the replicas' own
clocks never do; SQLite serves one machine, whose clock is used. The local deadline that stops calls
is measured on this process's monotonic clock, from before the claim, so neither a wall-clock jump
nor a pause (SIGSTOP) can stretch it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from keyorch.store.schema import UtcDateTime, key_leases

#: The part of a lease kept back before its expiry: no provider call starts in it.
SAFETY_MARGIN_S = 5.0
#: How long the lease of a holder known to be dead still stands once its death is seen: long enough
#: for a request it sent just before dying to have been carried out, short enough that a killed
#: one-shot command does not block its keys for the whole lease.
DEAD_HOLDER_GRACE_S = 5.0


def _pid_namespace() -> str:
    """This process's PID namespace (Linux: the inode of /proc/self/ns/pid), or "" where unknown."""
    try:
        link = str(Path("/proc/self/ns/pid").readlink())  # e.g. "pid:[4026531836]"
    except OSError:
        return ""
    return link.removeprefix("pid:[").removesuffix("]")


_HOST = socket.gethostname()[:40].replace(":", "-")
_PID_NS = _pid_namespace()


def new_holder() -> str:
    """A token for one claim: host, PID namespace and process (for people reading the table, and to
    recognise a holder that died on this machine) and a random part."""
    return f"{_HOST}:{_PID_NS}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def holder_is_dead(holder: str) -> bool:
    """Whether ``holder`` was a process of this host's PID namespace that no longer exists.

    Its lease then ends ``DEAD_HOLDER_GRACE_S`` after that is seen instead of at its expiry: a one-shot
    command killed mid-run would otherwise block its keys for the lease time. Only a holder known to
    be gone is dead; any doubt (another host or namespace, a PID in use again, no /proc) waits for the
    expiry.
    """
    parts = holder.split(":")
    if len(parts) != 4 or not _PID_NS or parts[0] != _HOST or parts[1] != _PID_NS or not parts[2].isdigit():
        return False
    pid = int(parts[2])
    if pid == os.getpid() or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return False
    return False


@dataclass(frozen=True)
class Lease:
    key_id: str
    holder: str
    epoch: int
    #: ``time.monotonic()`` after which this holder starts no provider call on the key
    deadline: float

    def live_locally(self) -> bool:
        return time.monotonic() < self.deadline

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def db_now(conn: AsyncConnection) -> Any:
    """The current time as the database sees it (PostgreSQL ``now()``), or this machine's (SQLite)."""
    if conn.dialect.name == "postgresql":
        return func.now()
    return literal(datetime.now(UTC), UtcDateTime)


def db_time_in(conn: AsyncConnection, ttl: float) -> Any:
    if conn.dialect.name == "postgresql":
        return func.now() + timedelta(seconds=ttl)
    return literal(datetime.now(UTC) + timedelta(seconds=ttl), UtcDateTime)


async def claim(conn: AsyncConnection, key_id: str, ttl: float) -> Lease | None:
    """Claim the key for ``ttl`` seconds; ``None`` while another holder's lease is live."""
    started = time.monotonic()
    holder = new_holder()
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    inserted = await conn.execute(
        dialect_insert(key_leases)
        .values(key_id=key_id, holder=holder, epoch=1, expires_at=db_time_in(conn, ttl))
        .on_conflict_do_nothing(index_elements=["key_id"])
    )
    if inserted.rowcount == 1:
        return Lease(key_id, holder, 1, started + ttl - SAFETY_MARGIN_S)
    taken = await conn.execute(
        update(key_leases)
        .where(key_leases.c.key_id == key_id, key_leases.c.expires_at <= db_now(conn))
        .values(holder=holder, epoch=key_leases.c.epoch + 1, expires_at=db_time_in(conn, ttl))
        .returning(key_leases.c.epoch)
    )
    epoch = taken.scalar_one_or_none()
    if epoch is None:
        current = (
            await conn.execute(select(key_leases.c.holder).where(key_leases.c.key_id == key_id))
        ).scalar_one_or_none()
        if current is not None and holder_is_dead(str(current)):
            # The holder died on this machine: its lease ends DEAD_HOLDER_GRACE_S from now (not at once:
            # a request it sent just before dying may still be carried out by the provider).
            await conn.execute(
                update(key_leases)
                .where(
                    key_leases.c.key_id == key_id,
                    key_leases.c.holder == current,
                    key_leases.c.expires_at > db_time_in(conn, DEAD_HOLDER_GRACE_S),
                )
                .values(expires_at=db_time_in(conn, DEAD_HOLDER_GRACE_S))
            )
        return None
    return Lease(key_id, holder, int(epoch), started + ttl - SAFETY_MARGIN_S)


async def renew(conn: AsyncConnection, lease: Lease, ttl: float) -> Lease | None:
    """Extend a live lease by ``ttl`` from now; ``None`` when it is no longer this holder's."""
    started = time.monotonic()
    result = await conn.execute(
        update(key_leases)
        .where(
            key_leases.c.key_id == lease.key_id,
            key_leases.c.holder == lease.holder,
            key_leases.c.epoch == lease.epoch,
            key_leases.c.expires_at > db_now(conn),
        )
        .values(expires_at=db_time_in(conn, ttl))
    )
    if result.rowcount != 1:
        return None
    return Lease(lease.key_id, lease.holder, lease.epoch, started + ttl - SAFETY_MARGIN_S)


async def is_live(conn: AsyncConnection, lease: Lease) -> bool:
    """Whether ``lease`` is still the key's live lease (read ``FOR UPDATE`` on PostgreSQL, so no claim
    can take it over before this transaction ends)."""
    stmt = select(key_leases.c.key_id).where(
        key_leases.c.key_id == lease.key_id,
        key_leases.c.holder == lease.holder,
        key_leases.c.epoch == lease.epoch,
        key_leases.c.expires_at > db_now(conn),
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).first() is not None


async def release(conn: AsyncConnection, lease: Lease) -> None:
    """End the lease now (the row and its epoch stay, so a later claim's epoch keeps growing)."""
    await conn.execute(
        update(key_leases)
        .where(
            key_leases.c.key_id == lease.key_id, key_leases.c.holder == lease.holder, key_leases.c.epoch == lease.epoch
        )
        .values(expires_at=db_now(conn))
    )
