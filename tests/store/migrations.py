"""The newest migration, by its file name: tests that migrate to the head name it from here, so a new migration
needs no change to them (tests/store/test_store.py checks it is the head Alembic finds)."""

from __future__ import annotations

from pathlib import Path

import keyorch.store.migrations

_VERSIONS = Path(keyorch.store.migrations.__file__).parent / "versions"

LATEST_MIGRATION = max(p.name.split("_", 1)[0] for p in _VERSIONS.glob("[0-9]*_*.py"))
