"""Drive a job mix through the real embedded Airflow under one policy and record what
happened: used by benchmarks/scheduling/run.py and tests/test_e2e_sched.py.

The stack is (re)started for each policy (the policy is an Airflow setting, read by the
components at start) on this benchmark's own DAG folder (dags/: the stand-in job only) with
the stand-in DAG as the one the policy schedules; all jobs are triggered over the REST API
as fast as it answers, and each job's record comes from Airflow's task instances plus the
decision its task recorded in the results database.

Not an installed module: run.py imports it from its own folder, the tests by file path.
"""

from __future__ import annotations

import importlib.util
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inferbench.errors import InferBenchError
from inferbench.pipeline import DB_ENV
from inferbench.scheduling.jobmix import Job
from inferbench.scheduling.observe import JobRecord, job_record

DAGS_FOLDER = Path(__file__).resolve().parent / "dags"


def _standin_dag_ids() -> tuple[str, str]:
    """The stand-in DAGs' ids, read from their file (a DAG folder's file, not an installed
    module): the one-task job and the same job as three tasks."""
    spec = importlib.util.spec_from_file_location("inferbench_sched_standin",
                                                  DAGS_FOLDER / "sched_job.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DAG_ID, module.STEPS_DAG_ID


DAG_ID, STEPS_DAG_ID = _standin_dag_ids()


def start_stack(home: Path, port: int, policy: str, workers: int, aging_rate: float = 0.1,
                dags_folder: Path = DAGS_FOLDER) -> str:
    """(Re)start the embedded Airflow on `home` with this policy and worker count."""
    from inferbench import perfdb
    from inferbench.embedded.airflow import start_airflow, stop_airflow
    from inferbench.embedded.postgres import database_url, ensure_postgres

    os.environ.update({"INFERBENCH_HOME": str(home), "INFERBENCH_WORKERS": str(workers),
                       "AIRFLOW__INFERBENCH__SCHED_POLICY": policy,
                       "AIRFLOW__INFERBENCH__SCHED_AGING_RATE": str(aging_rate)})
    ensure_postgres(home)
    url = database_url(home, "inferbench")
    os.environ[DB_ENV] = url
    perfdb.migrate(url)
    stop_airflow(home)
    return start_airflow(home, dags_folder, port=port, wait_for_dag=DAG_ID,
                         extra_env={"INFERBENCH_HOME": str(home), DB_ENV: url,
                                    "AIRFLOW__INFERBENCH__SCHED_DAGS":
                                        f"{DAG_ID},{STEPS_DAG_ID}"})


def run_mix(base_url: str, jobs: Sequence[Job], time_scale: float, timeout_s: float = 900,
            say: Callable[[str], None] = print, dag_id: str = DAG_ID) -> list[JobRecord]:
    """Trigger every job at once (in the mix's order) as runs of `dag_id`, wait for all,
    return their records."""
    from inferbench.airflow_api import AirflowClient

    client = AirflowClient(base_url)
    client.unpause(dag_id)
    tag = uuid.uuid4().hex[:6]
    submitted: dict[str, tuple[Job, float]] = {}
    for job in jobs:
        run_id = f"sched_{tag}_{job.label}"
        t = time.time()
        client.trigger(dag_id, run_id, job.conf(time_scale))
        submitted[run_id] = (job, t)
    say(f"triggered {len(jobs)} jobs in {time.time() - min(t for _, t in submitted.values()):.1f}"
        " s; waiting")
    deadline = time.monotonic() + timeout_s
    pending = set(submitted)
    while pending:
        if time.monotonic() > deadline:
            raise InferBenchError(f"{len(pending)} jobs not done within {timeout_s:.0f} s")
        for run_id in sorted(pending):
            if client.get_run(dag_id, run_id)["state"] in ("success", "failed"):
                pending.discard(run_id)
        time.sleep(2)
    predicted = stored_predictions(list(submitted), dag_id)
    return [job_record(run_id, job.label, t, predicted[run_id],
                       client.task_instances(dag_id, run_id))
            for run_id, (job, t) in submitted.items()]


def decisions(run_ids: list[str], dag_id: str = DAG_ID) -> list[dict[str, Any]]:
    """The decisions the jobs' tasks recorded, in the order they were made."""
    from inferbench import perfdb
    from inferbench.scheduling.store import recorded

    with perfdb.engine(os.environ[DB_ENV]).connect() as conn:
        return recorded(conn, dag_id, run_ids)


def stored_predictions(run_ids: list[str], dag_id: str = DAG_ID) -> dict[str, float]:
    found = {d["run_id"]: d["predicted_s"] for d in decisions(run_ids, dag_id)}
    missing = set(run_ids) - set(found)
    if missing:
        raise InferBenchError(f"no scheduling decision recorded for {sorted(missing)[:3]!r}...: "
                              "is the cluster policy installed (airflow_local_settings.py)?")
    return found
