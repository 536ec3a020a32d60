"""The results database: schema (SQLAlchemy Core), Alembic migrations, writers, queries."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


@lru_cache(maxsize=8)
def engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, future=True)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent; safe on every stage start)."""
    from alembic import command

    cfg = alembic_config(url)
    with engine(url).begin() as conn:
        # One migrator at a time: parallel stage tasks may all call this on start.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
