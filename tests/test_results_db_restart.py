"""The results database stopped for real in the middle of a run: a PostgreSQL of the
test's own (the session's server stays up for the other tests) is crash-stopped inside
collect's transaction, restarted, then stopped again at analyze.

What must hold: nothing half-written, a retry completes, and a run whose analysis never
finished ends `aborted` rather than `running` for ever.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from test_predictions_db import PLATFORM, write_run

from inferbench import perfdb
from inferbench.embedded.postgres import database_url, ensure_postgres, stop_postgres
from inferbench.errors import InferBenchError
from inferbench.perfdb import schema, writer
from inferbench.pipeline import RUN_TIMEOUT_S
from inferbench.stages import STAGES
from operators.run_callbacks import mark_run_aborted

pytestmark = pytest.mark.integration


@pytest.fixture
def own_postgres(tmp_path_factory):
    home = tmp_path_factory.mktemp("pg-restart")
    ensure_postgres(home)
    url = database_url(home, "inferbench")
    perfdb.migrate(url)
    yield home, url
    stop_postgres(home)


def _rows(url: str, run_id: str) -> dict[str, int]:
    with perfdb.engine(url).connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t).where(
            t.c.run_id == run_id)).scalar_one()
            for t in (schema.deployments, schema.points, schema.requests)}


def _run(url: str, run_id: str):
    with perfdb.engine(url).connect() as conn:
        return conn.execute(select(schema.runs).where(schema.runs.c.run_id == run_id)).one()


def test_postgres_crash_stopped_during_collect_then_analyze(own_postgres, tmp_path,
                                                            monkeypatch):
    home, url = own_postgres
    run_id = "pg-crash"
    ctx, _ = write_run(run_id, tmp_path, url, predictions=False)

    copy_rows = writer._copy_rows
    crashed = []

    def crash_before_the_first_copy(*args, **kwargs):
        if not crashed:  # the deployment and point rows are already sent, not committed
            crashed.append(True)
            stop_postgres(home, mode="immediate")
        return copy_rows(*args, **kwargs)

    monkeypatch.setattr(writer, "_copy_rows", crash_before_the_first_copy)
    with pytest.raises(InferBenchError) as failed:
        STAGES["collect"](ctx, PLATFORM)
    assert crashed and "the results database" in str(failed.value), failed.value
    assert "fix: start PostgreSQL" in str(failed.value)

    ensure_postgres(home)  # the database comes back (crash recovery)
    assert _rows(url, run_id) == {"deployments": 0, "points": 0, "requests": 0}, \
        "a crash inside collect's transaction left part of it behind"
    collected = STAGES["collect"](ctx, PLATFORM)  # Airflow's retry of the task
    assert collected["status"] == "measured" and collected["points"] == 4
    stored = _rows(url, run_id)
    assert stored["points"] == 4 and stored["requests"] > 0

    stop_postgres(home, mode="immediate")
    with pytest.raises(InferBenchError, match="the results database"):
        STAGES["analyze"](ctx)
    ensure_postgres(home)
    assert _run(url, run_id).status == "running"  # the analysis never finished
    monkeypatch.setenv("INFERBENCH_DB_URL", url)  # as the DAG processor has it
    # What Airflow calls (in the DAG processor) once the run has failed, with the context
    # it passes: the run is marked aborted, and what it stored stays.
    mark_run_aborted({"run_id": run_id, "reason": "task_failure"})
    run = _run(url, run_id)
    assert run.status == "aborted" and run.verdict == "INVALID"
    assert "task_failure" in run.verdict_reasons[0] and run.finished_at is not None
    assert _rows(url, run_id) == stored
    # A run that did finish is never marked aborted afterwards.
    analyzed = STAGES["analyze"](ctx)
    assert _run(url, run_id).status == analyzed["status"] == "complete"
    mark_run_aborted({"run_id": run_id, "reason": "task_failure"})
    assert _run(url, run_id).status == "complete"


def test_a_run_left_running_past_the_run_timeout_is_aborted_by_the_next_run(own_postgres,
                                                                             tmp_path):
    """The database was down when the run failed, so nobody could mark it: the next run's
    generate stage does, once it is older than any run may last; a younger one is left."""
    _, url = own_postgres
    write_run("left-running", tmp_path, url, predictions=False)
    write_run("still-running", tmp_path, url, predictions=False)
    with perfdb.engine(url).begin() as conn:
        conn.execute(update(schema.runs).where(schema.runs.c.run_id == "left-running").values(
            created_at=writer.now() - timedelta(seconds=RUN_TIMEOUT_S + 3600)))
    ctx, _ = write_run("next-run", tmp_path, url, predictions=False)
    STAGES["generate"](ctx)
    assert _run(url, "left-running").status == "aborted"
    assert "longer than a run may last" in _run(url, "left-running").verdict_reasons[0]
    assert _run(url, "still-running").status == "running"
