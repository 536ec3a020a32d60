"""What every stage gets: the run id, the validated spec, the run directory and the DB.

A stage is a plain function of a `StageContext`; it needs neither Airflow nor Docker, so
the same code runs as a local process, in a container, or straight from a test.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from inferbench import perfdb
from inferbench.errors import InferBenchError
from inferbench.paths import RunDir
from inferbench.spec import BenchmarkSpec, parse_spec

SPEC_ENV = "INFERBENCH_SPEC_JSON"
DB_ENV = "INFERBENCH_DB_URL"


@dataclass
class StageContext:
    run_id: str
    spec: BenchmarkSpec
    run_dir: RunDir
    db_url: str

    @property
    def db(self) -> Engine:
        return perfdb.engine(self.db_url)


def db_url_from_env() -> str:
    url = os.environ.get(DB_ENV)
    if not url:
        raise InferBenchError(
            f"{DB_ENV} is not set; it must name the results database, e.g. "
            "postgresql+psycopg://user:pw@host/inferbench (`inferbench up` sets it for the "
            "embedded default)")
    return url


def make_context(run_id: str, spec_json: str | None = None, db_url: str | None = None,
                 runs_root: Path | None = None) -> StageContext:
    """The spec comes from the caller (first stage) or from the run directory (later ones),
    so a retried or late stage always sees the spec the run started with."""
    run_dir = RunDir(run_id, runs_root)
    if run_dir.spec_file.exists():
        spec = parse_spec(json.loads(run_dir.spec_file.read_text()), str(run_dir.spec_file))
    else:
        raw = spec_json if spec_json is not None else os.environ.get(SPEC_ENV)
        if raw is None:
            raise InferBenchError(f"no spec for run {run_id!r}: {run_dir.spec_file} does not "
                                  f"exist and {SPEC_ENV} is not set; run the generate stage first")
        spec = parse_spec(json.loads(raw), source=f"spec of run {run_id!r}")
    return StageContext(run_id, spec, run_dir, db_url or db_url_from_env())


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file, even if this task is killed."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None
