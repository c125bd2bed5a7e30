"""What an adoption asks for (:mod:`keyorch.service.adoption`), in a module light enough for the CLI to import."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Selection:
    """Which keys to adopt: ``ids`` (keystore ref, provider id) pairs making ONE managed key, or a bulk filter."""

    ids: tuple[tuple[str, str], ...] = ()
    all_unmanaged: bool = False
    name_patterns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def bulk(self) -> bool:
        return self.all_unmanaged or bool(self.name_patterns) or bool(self.tags)


@dataclass(frozen=True)
class AdoptRequest:
    """An adoption as the CLI and the API ask for it (keystores, vault and template by id or name)."""

    keystores: tuple[str, ...]
    vault: str
    template: str
    selection: Selection
    label: str | None = None
    state: str | None = None
    marker: bool = True
    dry_run: bool = False
    #: the managed keys' own tags and description (a UKO export carries them)
    tags: tuple[tuple[str, str], ...] = ()
    description: str = ""


@dataclass(frozen=True)
class UkoMigration:
    """``keyorch migrate uko``: the export, the vault, and UKO's keystore and template names in keyorch's terms
    (``template_map[""]``: the template for entries keyorch has no name for)."""

    export: Path
    vault: str
    keystore_map: Mapping[str, str] = field(default_factory=dict)
    template_map: Mapping[str, str] = field(default_factory=dict)
    dry_run: bool = False
    marker: bool = True
