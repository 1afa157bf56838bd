"""Alembic environment: the connection is handed in by ``arenahub.platform.storage.db.migrate``."""

from alembic import context

from arenahub.platform.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through arenahub (the platform applies them on start)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
