"""Drive a job mix through the real embedded Airflow under one policy and record what
happened: used by benchmarks/scheduling/run.py and tests/test_e2e_sched.py.

The stack is (re)started for each policy (the policy is an Airflow setting, read by the
components at start), all jobs are triggered over the REST API as fast as it answers, and
each job's record comes from Airflow's task instances plus the stored decision.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from inferbench.errors import InferBenchError
from inferbench.scheduling.jobmix import Job
from inferbench.scheduling.observe import JobRecord, job_record

DAG_ID = "inferbench_sched_job"


def start_stack(home: Path, dags_folder: Path, port: int, policy: str, workers: int,
                aging_rate: float = 0.1) -> str:
    """(Re)start the embedded Airflow on `home` with this policy and worker count."""
    from inferbench import perfdb
    from inferbench.embedded.airflow import start_airflow, stop_airflow
    from inferbench.embedded.postgres import database_url, ensure_postgres

    os.environ.update({"INFERBENCH_HOME": str(home), "INFERBENCH_WORKERS": str(workers),
                       "AIRFLOW__INFERBENCH__SCHED_POLICY": policy,
                       "AIRFLOW__INFERBENCH__SCHED_AGING_RATE": str(aging_rate)})
    ensure_postgres(home)
    url = database_url(home, "inferbench")
    os.environ["INFERBENCH_DB_URL"] = url
    perfdb.migrate(url)
    stop_airflow(home)
    return start_airflow(home, dags_folder, port=port, wait_for_dag=DAG_ID,
                         extra_env={"INFERBENCH_HOME": str(home), "INFERBENCH_DB_URL": url})


def run_mix(base_url: str, jobs: Sequence[Job], time_scale: float, timeout_s: float = 900,
            say: Callable[[str], None] = print) -> list[JobRecord]:
    """Trigger every job at once (in the mix's order), wait for all, return their records."""
    from inferbench.airflow_api import AirflowClient

    client = AirflowClient(base_url)
    client.unpause(DAG_ID)
    tag = uuid.uuid4().hex[:6]
    submitted: dict[str, tuple[Job, float]] = {}
    for job in jobs:
        run_id = f"sched_{tag}_{job.label}"
        t = time.time()
        client.trigger(DAG_ID, run_id, job.conf(time_scale))
        submitted[run_id] = (job, t)
    say(f"triggered {len(jobs)} jobs in {time.time() - min(t for _, t in submitted.values()):.1f}"
        " s; waiting")
    deadline = time.monotonic() + timeout_s
    pending = set(submitted)
    while pending:
        if time.monotonic() > deadline:
            raise InferBenchError(f"{len(pending)} jobs not done within {timeout_s:.0f} s")
        for run_id in sorted(pending):
            if client.get_run(DAG_ID, run_id)["state"] in ("success", "failed"):
                pending.discard(run_id)
        time.sleep(2)
    predicted = stored_predictions(list(submitted))
    return [job_record(run_id, job.label, t, predicted[run_id],
                       client.task_instances(DAG_ID, run_id))
            for run_id, (job, t) in submitted.items()]


def stored_predictions(run_ids: list[str]) -> dict[str, float]:
    from inferbench import perfdb
    from inferbench.perfdb import schema

    t = schema.sched_jobs
    with perfdb.engine(os.environ["INFERBENCH_DB_URL"]).connect() as conn:
        rows = conn.execute(select(t.c.run_id, t.c.predicted_s).where(
            t.c.dag_id == DAG_ID, t.c.run_id.in_(run_ids))).all()
    missing = set(run_ids) - {r[0] for r in rows}
    if missing:
        raise InferBenchError(f"no scheduling decision stored for {sorted(missing)[:3]!r}...: "
                              "is the cluster policy installed (airflow_local_settings.py)?")
    return dict(rows)


def decisions(run_ids: list[str]) -> list[dict[str, Any]]:
    """The stored decisions of these runs, in decision order."""
    from inferbench import perfdb
    from inferbench.perfdb import schema

    t = schema.sched_jobs
    with perfdb.engine(os.environ["INFERBENCH_DB_URL"]).connect() as conn:
        rows = conn.execute(select(t).where(t.c.dag_id == DAG_ID, t.c.run_id.in_(run_ids))
                            .order_by(t.c.seq)).mappings().all()
    return [dict(r) for r in rows]
