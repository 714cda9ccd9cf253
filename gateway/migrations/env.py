"""Alembic environment: the connection is handed over by `gateway db upgrade`."""
from alembic import context

from gateway.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through `gateway db upgrade`
    raise RuntimeError("run migrations with `gateway db upgrade`")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
