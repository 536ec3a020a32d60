"""What the benchmark DAG does when one of its runs fails as a whole: the run's row in the
results database says `aborted`, with the reason, instead of `running` for ever.

A run fails as a whole when its analysis did not finish (the analyze task failed after its
retries, the run timed out, or a user marked it failed). Whatever it had stored stays. If
the database is down now too, the next run's generate stage marks it once it is older than
any run may last (`writer.abort_abandoned_runs`).

Airflow runs this in the DAG processor, with the run id and Airflow's reason in `context`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

ATTEMPTS = 3
PAUSE_S = 3.0  # between attempts: a database restarting is back within seconds


def abort_reason(context: Mapping[str, Any]) -> str:
    """Why the run ended without its analysis, from the callback's context."""
    ti = context.get("ti")
    task = f"; last task: {ti.task_id}" if getattr(ti, "task_id", None) else ""
    why = context.get("reason") or "no reason given"
    return (f"the DAG run failed before its analysis finished ({why}{task}); what it stored "
            "before is kept")


def mark_run_aborted(context: Mapping[str, Any]) -> None:
    """The DAG's on_failure_callback: mark the run `aborted` unless it already finished."""
    from inferbench import perfdb
    from inferbench.perfdb import writer
    from inferbench.stages.common import db_url_from_env

    run_id = context["run_id"]
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with perfdb.engine(db_url_from_env()).begin() as conn:
                if writer.abort_run(conn, run_id, abort_reason(context)):
                    log.warning("run %s marked aborted in the results database", run_id)
            return
        except Exception as exc:  # never fail the DAG processor over a note
            log.warning("could not mark run %s aborted (attempt %d of %d): %s", run_id,
                        attempt, ATTEMPTS, exc)
            if attempt < ATTEMPTS:
                time.sleep(PAUSE_S)
