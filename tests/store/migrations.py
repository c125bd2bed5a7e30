"""The newest migration, by its file name: tests that migrate to the head name it from here, so a new migration
needs no change to them (tests/store/test_store.py checks it is the head Alembic finds)."""

from __future__ import annotations

from pathlib import Path

import keyorch.store.migrations
from keyorch.domain.models import ManagedKey
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext

_VERSIONS = Path(keyorch.store.migrations.__file__).parent / "versions"

LATEST_MIGRATION = max(p.name.split("_", 1)[0] for p in _VERSIONS.glob("[0-9]*_*.py"))


async def one_key(ctx: ServiceContext, state: str | None = None) -> ManagedKey:
    """Vault ``v``, AWS keystore ``ks`` (no provider behind it), template ``t`` and one key ``old`` made from it:
    what a migration test migrates over."""
    await vaults.create_vault(ctx, "v")
    request = keystores.ConnectRequest(
        vault="v", name="ks", type="aws_kms", region="us-east-1", credentials_from_environment=True
    )
    await keystores.connect_keystore(ctx, request)
    await templates.create_template(ctx, vault="v", name="t", keystores=["ks"])
    return await keys.create_key(ctx, template="t", label="old", state=state)
