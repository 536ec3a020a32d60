"""A stand-in benchmark job for the scheduler: one task that holds its worker for `sleep_s`.

The scheduling policy (operators/scheduling.py) places and orders it exactly like a real
benchmark run: it predicts the job's length from `spec` (times `time_scale`, so that a
job of minutes can stand in as seconds), picks the worker pool, sets the priority.
Used by benchmarks/scheduling and the scheduler tests; the sleep stands in for the load.
One task per job, so "two jobs never share a worker" is exactly the pool's slot limit.
"""

from __future__ import annotations

import time

from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="inferbench_sched_job",
    description="Stand-in benchmark job for the scheduling policies (sleeps)",
    schedule=None,
    catchup=False,
    max_active_runs=1024,  # the worker pools, not the DAG, limit what runs at once
    params={
        "spec": Param({}, type="object", description="The benchmark spec being stood in for."),
        "sleep_s": Param(1.0, type="number", minimum=0, maximum=3600,
                         description="How long the job holds its worker (its true length)."),
        "time_scale": Param(1.0, type="number", exclusiveMinimum=0,
                            description="Multiplies the spec's predicted length."),
        "label": Param("", type="string", description="Free label (the benchmark's job id)."),
    },
    tags=["inferbench", "scheduling"],
    doc_md=__doc__,
) as dag:

    @task(task_id="work")
    def work(params: dict | None = None) -> float:
        sleep_s = float((params or {})["sleep_s"])
        time.sleep(sleep_s)
        return sleep_s

    work()
