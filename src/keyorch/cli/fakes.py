"""`keyorch fakes …`: run the bundled fake provider services."""

from __future__ import annotations

import click


@click.group(name="fakes")
def fakes() -> None:
    """Fake AWS KMS, Azure Key Vault, Google Cloud KMS and IBM Key Protect services."""
