"""Helpers shared by the benchmarks that run the real stages in this process (capacity,
prediction): a throwaway home with its embedded PostgreSQL, one run through the stages,
and the load average printed beside every table."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def throwaway_home(prefix: str) -> Iterator[Path]:
    """A new InferBench home with its embedded PostgreSQL migrated, set in this process's
    environment for the stages; PostgreSQL is stopped at the end (the files stay)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["INFERBENCH_HOME"] = str(home)
    from inferbench import perfdb
    from inferbench.embedded.postgres import database_url, ensure_postgres, stop_postgres

    ensure_postgres(home)
    url = database_url(home, "inferbench")
    perfdb.migrate(url)
    os.environ["INFERBENCH_DB_URL"] = url
    try:
        yield home
    finally:
        stop_postgres(home)


def run_through_stages(run_id: str, spec: dict[str, Any], platform: str) -> dict[str, Any]:
    """generate -> convert -> measure (configuration 0) -> collect -> analyze. Returns the
    run's context, the measure stage's result and time, and the run's summary."""
    from inferbench.reporting import run_summary
    from inferbench.stages import STAGES
    from inferbench.stages.common import make_context

    ctx = make_context(run_id, spec_json=json.dumps(spec))
    STAGES["generate"](ctx)
    STAGES["convert"](ctx)
    started = time.monotonic()
    try:
        measured = STAGES["measure"](ctx, platform, 0)
    finally:
        STAGES["collect"](ctx, platform)
    measure_s = time.monotonic() - started
    STAGES["analyze"](ctx)
    with ctx.db.connect() as conn:
        summary = run_summary(conn, run_id)
    return {"ctx": ctx, "measured": measured, "measure_s": measure_s, "summary": summary}
