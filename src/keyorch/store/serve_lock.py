"""One ``keyorch serve`` per SQLite database: an exclusive ``flock`` on a lock file beside it.

SQLite is the embedded single-daemon store (several replicas need PostgreSQL): two daemons on one
file would both reconcile every key. ``keyorch serve`` therefore takes :func:`hold_serve_lock` before
it starts. The lock file is the database's path plus ``.serve.lock`` (``k.db`` → ``k.db.serve.lock``),
mode 0600, and holds the holder's pid for the refusal message. The kernel releases a ``flock`` when
its process ends, however it ends (a SIGKILL too), so a stale file never blocks a new daemon.
One-shot CLI commands do not take it: they keep working beside a running daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from keyorch.domain.errors import ConfigurationError

SUFFIX = ".serve.lock"

#: The open lock files of this process: the lock lasts as long as the descriptor stays open.
_HELD: dict[Path, int] = {}


class AnotherDaemon(ConfigurationError):
    """Another ``keyorch serve`` holds the database's serve lock (exit code 2)."""

    code = "database_in_use"


def lock_path_for(database: Path) -> Path:
    return database.with_name(database.name + SUFFIX)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", errors="replace").strip()
        if text.isdigit():
            return f"pid {text}"
    return "pid unknown"


def hold_serve_lock(database: Path) -> Path:
    """Take the serve lock of the SQLite file ``database`` for the rest of this process's life; return the
    lock file's path. Raises :class:`AnotherDaemon` naming the file and the holder's pid when held."""
    database = database.resolve()
    path = lock_path_for(database)
    if path in _HELD:
        return path
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot open the serve lock file {path} beside the SQLite database ({exc.strerror})"
        ) from None
    try:
        os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AnotherDaemon(
                f"another keyorch serve ({_holder(fd)}) already runs on the SQLite database {database} "
                f"(lock file {path}); SQLite serves one daemon only, so stop that one or use PostgreSQL "
                "for several replicas"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    _HELD[path] = fd
    return path
