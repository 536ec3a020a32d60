"""Migration i3b_server_config on a real PostgreSQL: rows written under 0001 become server
configuration 0, a second configuration of the same point fits beside it, and downgrading
keeps configuration 0."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, insert, select, text

from inferbench.perfdb import alembic_config, schema

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_db_url(pg_home) -> str:
    from inferbench.embedded.postgres import _server, database_url

    server = _server(pg_home)
    server.psql("DROP DATABASE IF EXISTS i3b_migration;")
    server.psql("CREATE DATABASE i3b_migration;")
    return database_url(pg_home, "i3b_migration")


def migrate_to(url: str, revision: str, down: bool = False) -> None:
    from alembic import command

    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
    engine.dispose()


POINT = {"run_id": "r1", "platform": "triton", "point": 0, "batch_size": 1,
         "arrival": "poisson", "started_ns": 1, "ended_ns": 2, "stop_reason": "done",
         "complete": True}


def test_old_rows_become_config_0_and_a_second_config_fits(fresh_db_url):
    migrate_to(fresh_db_url, "0001")
    engine = create_engine(fresh_db_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO runs (run_id, name, spec, spec_hash, status, created_at) VALUES "
            "('r1', 'n', '{}', 'h', 'complete', :t)"), {"t": datetime.now(UTC)})
        conn.execute(text(
            "INSERT INTO points (run_id, platform, point, batch_size, arrival, started_ns, "
            "ended_ns, stop_reason, complete) VALUES ('r1', 'triton', 0, 1, 'poisson', 1, 2, "
            "'done', true)"))
    migrate_to(fresh_db_url, "head")
    with engine.begin() as conn:
        assert conn.execute(select(schema.points.c.config_index)).scalars().all() == [0]
        conn.execute(insert(schema.points).values(**POINT, config_index=1))
        conn.execute(insert(schema.server_configs).values(
            run_id="r1", platform="triton", config_index=1, label="db=on,delay=0us,inst=1",
            knobs={"dynamic_batching": True}))
        keys = conn.execute(select(schema.points.c.config_index, schema.points.c.point)
                            .order_by(schema.points.c.config_index)).all()
        assert [tuple(k) for k in keys] == [(0, 0), (1, 0)]
    engine.dispose()
    migrate_to(fresh_db_url, "0001", down=True)
    engine = create_engine(fresh_db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM points")).scalar_one() == 1
        columns = conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'points'"
        )).scalars().all()
        assert "config_index" not in columns
    engine.dispose()


def test_long_version_strings_are_stored_after_i3d(fresh_db_url):
    """A deployment whose platform version is longer than the old 64 characters (a Triton
    image reference, TorchServe's components) is stored, not a failed collect stage."""
    migrate_to(fresh_db_url, "i3c_server_stats")
    migrate_to(fresh_db_url, "head")
    engine = create_engine(fresh_db_url)
    version = "tritonserver image " + "a-long-image-reference/" * 5 + "tritonserver:24.09-py3"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO runs (run_id, name, spec, spec_hash, status, created_at) VALUES "
            "('r1', 'n', '{}', 'h', 'complete', :t)"), {"t": datetime.now(UTC)})
        conn.execute(insert(schema.deployments).values(
            run_id="r1", platform="triton", config_index=0, endpoint="http://h:1",
            platform_version=version, cold_start_s=1.0, status="measured"))
        stored = conn.execute(select(schema.deployments.c.platform_version)).scalar_one()
    engine.dispose()
    assert len(version) > 64 and stored == version
