"""Alembic environment: migrations run programmatically by inferbench.perfdb.migrate()."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from inferbench.perfdb.schema import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:
    context.configure(connection=conn, target_metadata=metadata,
                      version_table="inferbench_alembic_version")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
