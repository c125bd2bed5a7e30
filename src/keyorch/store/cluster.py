"""What the daemons sharing one database keep there to share the work (docs/ha.md).

* ``replicas``: one row per running daemon, kept alive by its heartbeat; the live rows are the
  cluster's members, from which each daemon computes which keys are its share.
* ``cluster_jobs``: work done once per interval for the whole cluster, not once per daemon (the
  periodic listing of every keystore). A job is claimed like a key's lease: the holder, an epoch that
  grows with every claim, an expiry the holder renews while it works, and when it is next due.
* ``keystore_listings``: the latest listing of each keystore, written by the daemon that ran the
  listing job, read by every daemon to plan its share of the keys.

Every expiry is judged on the database's clock (PostgreSQL ``now()``; SQLite serves one machine).
Correctness never rests on these tables: a key is acted on only under its own lease
(store/leases.py). They decide who does what, so that the work is done once and shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from keyorch.store.leases import db_now, db_time_in
from keyorch.store.schema import cluster_jobs, keystore_listings, replicas


def _insert(conn: AsyncConnection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


# --- membership --------------------------------------------------------------------------------


async def heartbeat(conn: AsyncConnection, replica_id: str, ttl: float) -> list[str]:
    """Keep this daemon's row alive for ``ttl`` seconds; the ids of every live member, sorted."""
    dialect_insert = _insert(conn)
    await conn.execute(
        dialect_insert(replicas)
        .values(id=replica_id, started_at=db_now(conn), expires_at=db_time_in(conn, ttl))
        .on_conflict_do_update(index_elements=["id"], set_={"expires_at": db_time_in(conn, ttl)})
    )
    await conn.execute(delete(replicas).where(replicas.c.expires_at <= db_now(conn)))
    rows = await conn.execute(select(replicas.c.id).order_by(replicas.c.id))
    return [str(r) for r in rows.scalars()]


async def leave(conn: AsyncConnection, replica_id: str) -> None:
    """A clean stop: the others take over this daemon's share at their next heartbeat."""
    await conn.execute(delete(replicas).where(replicas.c.id == replica_id))


# --- cluster-wide jobs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobClaim:
    name: str
    holder: str
    epoch: int


async def claim_job(conn: AsyncConnection, name: str, holder: str, ttl: float) -> JobClaim | None:
    """Claim the job if it is due and nobody holds it (or its holder's claim expired); None otherwise."""
    await conn.execute(
        _insert(conn)(cluster_jobs)
        .values(name=name, holder=None, epoch=0, due_at=db_now(conn), expires_at=db_now(conn))
        .on_conflict_do_nothing(index_elements=["name"])
    )
    now = db_now(conn)
    taken = await conn.execute(
        update(cluster_jobs)
        .where(
            cluster_jobs.c.name == name,
            cluster_jobs.c.due_at <= now,
            or_(cluster_jobs.c.holder.is_(None), cluster_jobs.c.expires_at <= now),
        )
        .values(holder=holder, epoch=cluster_jobs.c.epoch + 1, expires_at=db_time_in(conn, ttl))
        .returning(cluster_jobs.c.epoch)
    )
    epoch = taken.scalar_one_or_none()
    return None if epoch is None else JobClaim(name, holder, int(epoch))


async def renew_job(conn: AsyncConnection, job: JobClaim, ttl: float) -> bool:
    """Extend a claim still held; False once another daemon took the job over."""
    result = await conn.execute(
        update(cluster_jobs)
        .where(cluster_jobs.c.name == job.name, cluster_jobs.c.holder == job.holder, cluster_jobs.c.epoch == job.epoch)
        .values(expires_at=db_time_in(conn, ttl))
    )
    return result.rowcount == 1


async def finish_job(conn: AsyncConnection, job: JobClaim, next_in: float) -> bool:
    """Done: free the job and make it due again in ``next_in`` seconds; False if the claim was lost."""
    result = await conn.execute(
        update(cluster_jobs)
        .where(cluster_jobs.c.name == job.name, cluster_jobs.c.holder == job.holder, cluster_jobs.c.epoch == job.epoch)
        .values(holder=None, due_at=db_time_in(conn, next_in), expires_at=db_now(conn))
    )
    return result.rowcount == 1


async def finished_runs(conn: AsyncConnection, name: str) -> int | None:
    """The epoch of the job's last finished run (None while a run is under way or before the first):
    it changes with every run, so a reader can tell a run it has not seen yet."""
    row = (
        await conn.execute(select(cluster_jobs.c.epoch, cluster_jobs.c.holder).where(cluster_jobs.c.name == name))
    ).first()
    if row is None or row.holder is not None or row.epoch == 0:
        return None
    return int(row.epoch)


async def make_due(conn: AsyncConnection, name: str) -> None:
    """Bring the job's next run forward to now (e.g. a keystore was just connected)."""
    await conn.execute(update(cluster_jobs).where(cluster_jobs.c.name == name).values(due_at=db_now(conn)))


# --- shared listings -------------------------------------------------------------------------------


async def save_listing(
    conn: AsyncConnection, keystore_id: str, taken_at: datetime, entries: str, listed_by: str
) -> None:
    """Store one keystore's listing (``entries``: its observations as JSON text, reconcile/cluster.py)."""
    values = {"taken_at": taken_at, "listed_by": listed_by, "entries": entries}
    await conn.execute(
        _insert(conn)(keystore_listings)
        .values(keystore_id=keystore_id, **values)
        .on_conflict_do_update(index_elements=["keystore_id"], set_=values)
    )


async def drop_listings(conn: AsyncConnection, keep: list[str]) -> None:
    """Forget every stored listing but these (a keystore that failed to list, or was disconnected)."""
    await conn.execute(delete(keystore_listings).where(keystore_listings.c.keystore_id.not_in(sorted(keep))))


async def listing_times(conn: AsyncConnection) -> dict[str, datetime]:
    """When each stored listing was taken (cheap: the entries are not read)."""
    rows = await conn.execute(select(keystore_listings.c.keystore_id, keystore_listings.c.taken_at))
    return {str(ks): taken for ks, taken in rows}


async def load_listings(conn: AsyncConnection, keystore_ids: list[str]) -> dict[str, tuple[datetime, str]]:
    """The stored listings of these keystores: keystore id -> (taken at, entries as JSON text)."""
    rows = await conn.execute(
        select(keystore_listings.c.keystore_id, keystore_listings.c.taken_at, keystore_listings.c.entries).where(
            keystore_listings.c.keystore_id.in_(sorted(keystore_ids))
        )
    )
    return {str(keystore_id): (taken_at, str(entries)) for keystore_id, taken_at, entries in rows}
