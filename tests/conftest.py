"""Shared fixtures. Airflow is pointed at a throw-away home with SQLite *before* anything
imports it; the results database is a real PostgreSQL (embedded, started once per session)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="inferbench-test-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"


def pytest_unconfigure(config):
    """The session's Airflow home goes with the session: one is made per run."""
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


def load_harness():
    """The scheduling benchmark's harness (and through it the stand-in DAGs' ids):
    benchmarks/ is not an installed package, so it is loaded from its file."""
    path = ROOT / "benchmarks" / "scheduling" / "harness.py"
    spec = importlib.util.spec_from_file_location("inferbench_sched_harness", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pg_home(tmp_path_factory) -> Path:
    """A real PostgreSQL server (pgserver) for the whole test session."""
    from inferbench.embedded.postgres import ensure_postgres, stop_postgres

    home = tmp_path_factory.mktemp("ibhome")
    ensure_postgres(home)
    yield home
    stop_postgres(home)


@pytest.fixture(scope="session")
def db_url(pg_home) -> str:
    from inferbench import perfdb
    from inferbench.embedded.postgres import database_url

    url = database_url(pg_home, "inferbench")
    perfdb.migrate(url)
    return url


@pytest.fixture
def inferbench_env(pg_home, db_url, monkeypatch) -> Path:
    """Environment a stage process sees: home and results DB."""
    monkeypatch.setenv("INFERBENCH_HOME", str(pg_home))
    monkeypatch.setenv("INFERBENCH_DB_URL", db_url)
    return pg_home


class TaskLog:
    """Collects what a stage runner writes into the task log (its `log` argument)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args) -> None:
        self.lines.append(msg % args)

    warning = info


def point_and_requests(db_url: str, run_id: str, *columns: str):
    """A one-point run's point row (a mapping) and its requests' `columns`, from the
    results database."""
    from sqlalchemy import select

    from inferbench import perfdb
    from inferbench.perfdb import schema

    r = schema.requests
    with perfdb.engine(db_url).connect() as conn:
        point = conn.execute(select(schema.points).where(schema.points.c.run_id == run_id)
                             ).mappings().one()
        rows = conn.execute(select(*(r.c[c] for c in columns)).where(r.c.run_id == run_id)
                            ).all()
    return point, rows


def run_stages_for(run_id: str, spec: dict, platform: str) -> dict:
    """One platform's run straight through the stages (no Airflow): generate, convert, serve,
    load, then collect and stop whatever happened, then analyze; the analysis's result."""
    import json

    from inferbench.stages import STAGES
    from inferbench.stages.common import make_context

    ctx = make_context(run_id, spec_json=json.dumps(spec))
    for stage in ("generate", "convert"):
        STAGES[stage](ctx)
    try:
        STAGES["serve"](ctx, platform)
        STAGES["load"](ctx, platform)
    finally:
        STAGES["collect"](ctx, platform)
        STAGES["stop"](ctx, platform)
    return STAGES["analyze"](ctx)


# --- the docker tier's daemon and stage image, shared by its test files ---

@pytest.fixture(scope="session")
def docker_client():
    """A Docker daemon (scripts/start-docker.sh installs and starts one, docker-compose
    too), or the test is skipped saying why."""
    import subprocess

    from inferbench import containers

    started = subprocess.run(["bash", str(ROOT / "scripts" / "start-docker.sh")],
                             capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        pytest.skip(f"no Docker daemon can be started here: {started.stderr[-500:]}")
    return containers.client()


@pytest.fixture(scope="session")
def stage_image(docker_client) -> str:
    """Built once per session; the classic builder's layer cache makes a rebuild quick."""
    import subprocess

    built = subprocess.run(["bash", str(ROOT / "scripts" / "build-images.sh")],
                           env={**os.environ, "SKIP_AIRFLOW_IMAGE": "1"},
                           capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stdout + built.stderr[-3000:]
    return "inferbench/stage:cpu"
