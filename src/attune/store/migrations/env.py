"""Alembic environment: runs Attune's migrations on the connection handed in by attune.store."""

from __future__ import annotations

from alembic import context

import attune.generate.models
import attune.rights.models
import attune.store.audit  # noqa: F401
from attune.store.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def run() -> None:
    """Migrate the connection given in config attributes, or the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
