"""`keyorch config show`: the settings this process runs with, after every source is applied."""

from __future__ import annotations

from typing import Any

import click

from keyorch.cli.runtime import CliState, emit, properties_table
from keyorch.settings import Settings
from keyorch.urls import MASK, redact_url, redact_urls


def shown_settings(settings: Settings) -> dict[str, Any]:
    """Every setting, as it may be printed: a secret as ``***`` (``None`` when not set), a URL without its
    user-info."""
    doc: dict[str, Any] = settings.model_dump(mode="json")
    doc["master_key"] = MASK if settings.master_key is not None else None
    doc["database_url"] = redact_url(settings.database_url)
    return {name: _without_userinfo(value) for name, value in doc.items()}


def _without_userinfo(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_userinfo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_userinfo(v) for v in value]
    return redact_urls(value) if isinstance(value, str) else value


def _flat(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for name, value in doc.items():
        if isinstance(value, dict):
            rows.extend(_flat(value, f"{prefix}{name}."))
        else:
            rows.append((f"{prefix}{name}", value))
    return rows


@click.group(name="config")
def config() -> None:
    """Local (no --server): keyorch's settings (defaults < --config file < KEYORCH_* environment < flags)."""


@config.command(name="show")
@click.pass_obj
def show(state: CliState) -> None:
    """Print the effective settings, secrets masked (--output json: one document)."""
    doc = shown_settings(state.settings)
    emit(state, doc, lambda: properties_table("settings", _flat(doc)))
