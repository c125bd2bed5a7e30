"""Alembic environment: keyorch runs migrations programmatically (``keyorch init``) on its own connection."""

from __future__ import annotations

from alembic import context

from keyorch.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("keyorch migrations run through `keyorch init`, which supplies the connection")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
