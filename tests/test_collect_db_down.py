"""PostgreSQL unreachable when a configuration's measurements are collected: the collect
task fails saying which database and what to do, the measured files stay as they were, and
collecting again once the database is back stores every point (nothing measured is lost).

Real PostgreSQL for the run's registration and the second collect; the "down" database is a
port nothing listens on (stopping the session's server would take it from the other tests)."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import func, select
from test_predictions_db import PLATFORM, SPEC, write_run

from inferbench import perfdb
from inferbench.errors import InferBenchError
from inferbench.netutil import free_port
from inferbench.perfdb import schema
from inferbench.stages import STAGES
from inferbench.stages.common import make_context

pytestmark = pytest.mark.integration


def _digests(files) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(files.points_dir.iterdir()) + [files.load]}


def test_collect_with_the_database_down_fails_clearly_and_loses_nothing(db_url, tmp_path):
    run_id = "collect-db-down"
    ctx, files = write_run(run_id, tmp_path, db_url, predictions=False)
    before = _digests(files)
    down_url = f"postgresql+psycopg://inferbench@127.0.0.1:{free_port()}/inferbench"
    down = make_context(run_id, spec_json=json.dumps(SPEC), db_url=down_url,
                        runs_root=tmp_path)
    with pytest.raises(InferBenchError) as failed:
        STAGES["collect"](down, PLATFORM)
    message = str(failed.value)
    assert "results database" in message and down_url.split("@")[1] in message, message
    assert "Connection refused" in message and "fix: start PostgreSQL" in message, message
    assert _digests(files) == before  # the measurements are untouched
    # the database is back: the task's retry (or `inferbench stage collect`) stores it all
    collected = STAGES["collect"](ctx, PLATFORM)
    assert collected["status"] == "measured" and collected["points"] == 4
    with perfdb.engine(db_url).connect() as conn:
        stored = conn.execute(select(func.count()).select_from(schema.points).where(
            schema.points.c.run_id == run_id)).scalar_one()
    assert stored == 4
