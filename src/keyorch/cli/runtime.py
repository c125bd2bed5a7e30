"""Shared machinery of the CLI: global options, running an operation, printing its result."""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from keyorch.audit import Actor
from keyorch.domain.clock import SystemClock
from keyorch.domain.errors import ConfigurationError
from keyorch.service.context import ServiceContext
from keyorch.settings import Settings
from keyorch.store.engine import redacted, schema_revisions, sqlite_path
from keyorch.store.repository import Store

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class CliState:
    settings: Settings
    output: str  # "table" | "json"

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


#: KEYORCH_CLOCK_OFFSET_SECONDS (testing only) may shift the clock by at most about a century.
MAX_CLOCK_OFFSET_SECONDS = 100 * 366 * 86_400


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


def _clock(settings: Settings) -> SystemClock:
    offset = settings.clock_offset_seconds
    if not math.isfinite(offset) or abs(offset) > MAX_CLOCK_OFFSET_SECONDS:
        raise ConfigurationError(
            f"setting clock_offset_seconds (env KEYORCH_CLOCK_OFFSET_SECONDS) is not valid: {offset!r}; "
            f"give a number of seconds between -{MAX_CLOCK_OFFSET_SECONDS} and {MAX_CLOCK_OFFSET_SECONDS}"
        )
    return SystemClock(offset)


async def open_context(state: CliState, *, require_schema: bool = True) -> ServiceContext:
    path = check_database_url(state.settings.database_url)
    if require_schema and path is not None and not path.is_file():
        raise ConfigurationError(
            f"there is no keyorch database at {path} (or it is not a file); run `keyorch init` first"
        )
    clock = _clock(state.settings)
    store = Store.from_url(state.settings.database_url)
    if require_schema:
        try:
            current, head = await schema_revisions(store.engine)
        except BaseException:
            await store.close()
            raise
        if current != head:
            await store.close()
            where = redacted(state.settings.database_url)
            if current is None:
                raise ConfigurationError(f"the database at {where} is not initialized; run `keyorch init` first")
            raise ConfigurationError(
                f"the database at {where} is at schema revision {current}, this keyorch needs {head}; "
                "run `keyorch init` to migrate"
            )
    return ServiceContext(
        store=store,
        actor=Actor(user=state.user, source="cli"),
        clock=clock,
        master_key=state.settings.load_master_key(),
    )


def with_service(
    fn: Callable[Concatenate[CliState, ServiceContext, P], Awaitable[R]],
) -> Callable[P, R]:
    """Turn ``async def cmd(state, ctx, **options)`` into a click callback run on its own loop."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        state = click.get_current_context().find_object(CliState)
        assert state is not None

        async def run() -> R:
            ctx = await open_context(state)
            try:
                return await fn(state, ctx, *args, **kwargs)
            finally:
                await ctx.store.close()

        return asyncio.run(run())

    return wrapper


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
