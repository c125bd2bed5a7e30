"""Shared machinery of the CLI: global options, running an operation, printing its result."""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from keyorch.audit import Actor
from keyorch.cli.backend import Backend
from keyorch.domain.clock import SystemClock
from keyorch.domain.errors import ConfigurationError
from keyorch.service.context import ServiceContext
from keyorch.service.environment import EnvironmentPolicy
from keyorch.settings import Settings
from keyorch.store.audit_keys import check_master_key
from keyorch.store.engine import schema_revisions, sqlite_path
from keyorch.store.repository import Store
from keyorch.urls import redact_url

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class ServerRequest:
    """``--server URL`` with ``--token-file`` and ``--server-ca-file``, as given (read when a command needs them,
    so the local commands never do)."""

    url: str
    token_file: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True)
class ServerOptions:
    """``--server``: run commands through this daemon's REST API with this bearer token."""

    url: str
    token: str = field(repr=False)
    ca_file: str | None = None


def server_options(request: ServerRequest) -> ServerOptions:
    """``--server`` with its token (``--token-file``, else ``KEYORCH_TOKEN``); a token file others can read is
    warned about on stderr."""
    from keyorch.cli.remote import check_server_url

    check_server_url(request.url)
    if request.token_file is not None:
        token = _read_token_file(request.token_file)
    else:
        token = os.environ.get("KEYORCH_TOKEN", "").strip()
        if not token:
            raise ConfigurationError("--server needs a bearer token: set KEYORCH_TOKEN or give --token-file FILE")
        _check_token(token, "KEYORCH_TOKEN")
    return ServerOptions(request.url, token, request.ca_file)


def _check_token(token: str, where: str) -> str:
    if not token or any(c.isspace() or not c.isprintable() or not c.isascii() for c in token):
        raise ConfigurationError(f"{where} does not hold a bearer token (one line of printable ASCII, no spaces)")
    return token


def _read_token_file(path: str) -> str:
    try:
        mode = Path(path).stat().st_mode
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"--token-file {path!r} cannot be read: {exc.strerror}") from None
    if stat.S_IMODE(mode) & 0o077:
        click.echo(
            f"warning: the token file {path} can be read by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run chmod 600 {path}",
            err=True,
        )
    return _check_token(raw.decode("utf-8", "replace").strip(), f"--token-file {path!r}")


@dataclass
class CliState:
    settings: Settings
    output: str  # "table" | "json"
    server: ServerRequest | None = None

    @property
    def user(self) -> str:
        if self.settings.user:
            return self.settings.user
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"

    def console(self) -> Console:
        return Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False, highlight=False)


def check_database_url(url: str) -> Path | None:
    """Refuse a database URL that cannot be opened; return the SQLite file's path, if SQLite."""
    try:
        path = sqlite_path(url)
    except ValueError as exc:  # make_url's own parsing errors, e.g. a broken IPv6 host
        raise ConfigurationError(
            f"the database URL is not valid ({exc}); use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    if path is not None and "\x00" in str(path):
        raise ConfigurationError("the SQLite database path must not contain a NUL character")
    return path


async def open_context(state: CliState, *, require_schema: bool = True) -> ServiceContext:
    path = check_database_url(state.settings.database_url)
    if require_schema and path is not None and not path.is_file():
        raise ConfigurationError(
            f"there is no keyorch database at {path} (or it is not a file); run `keyorch init` first"
        )
    master_key = state.settings.load_master_key()
    store = Store.from_url(state.settings.database_url)
    if require_schema:
        try:
            current, head = await schema_revisions(store.engine)
            if current == head:  # another key than the database's is refused before anything is done
                async with store.read() as tx:
                    await check_master_key(tx.conn, master_key, required=False)
        except BaseException:
            await store.close()
            raise
        if current != head:
            await store.close()
            where = redact_url(state.settings.database_url)
            if current is None:
                raise ConfigurationError(f"the database at {where} is not initialized; run `keyorch init` first")
            raise ConfigurationError(
                f"the database at {where} is at schema revision {current}, this keyorch needs {head}; "
                "run `keyorch init` to migrate"
            )
    return ServiceContext(
        store=store,
        actor=Actor(user=state.user, source="cli-direct"),
        clock=SystemClock(),  # never shifted from the environment: tests inject their own clock in-process
        master_key=master_key,
        environment=EnvironmentPolicy.for_operator(state.settings.environment_credentials),
    )


def with_backend(
    fn: Callable[Concatenate[CliState, Backend, P], Awaitable[R]],
) -> Callable[P, R]:
    """Turn ``async def cmd(state, backend, **options)`` into a click callback run on its own loop.

    The backend is the daemon's API with ``--server``, else the database itself (``--db``).
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        state = click.get_current_context().find_object(CliState)
        assert state is not None

        async def run() -> R:
            backend = await open_backend(state)
            try:
                return await fn(state, backend, *args, **kwargs)
            finally:
                await backend.aclose()

        return asyncio.run(run())

    return wrapper


async def open_backend(state: CliState) -> Backend:
    if state.server is not None:
        from keyorch.cli.remote import RemoteBackend

        options = server_options(state.server)
        return RemoteBackend(options.url, options.token, ca_file=options.ca_file)
    from keyorch.cli.direct import DirectBackend

    settings = state.settings
    return DirectBackend(
        await open_context(state),
        settings.reconcile,
        settings.api.keystore_check_timeout_seconds,
        settings.keys.rotation_min_interval,
    )


def emit(state: CliState, doc: Any, table: Callable[[], Table | str] | None = None) -> None:
    """Print one JSON document (``--output json``) or a table."""
    if state.output == "json":
        click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))
        return
    console = state.console()
    console.print(table() if table is not None else json.dumps(doc, indent=2, default=str))


def make_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title=title, show_lines=False, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else escape(str(v)) for v in row))
    return table


def properties_table(title: str, props: Sequence[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("property", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in props:
        table.add_row(escape(name), "" if value is None else escape(str(value)))
    return table
