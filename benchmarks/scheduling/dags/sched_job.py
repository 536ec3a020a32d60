"""A stand-in benchmark job for the scheduler: one task that holds its worker for `sleep_s`.

Benchmark-only: this folder is the Airflow DAG folder of the scheduling benchmark
(benchmarks/scheduling/harness.py starts the embedded Airflow on it and lists this DAG in
`[inferbench] sched_dags`); it is not part of the product's dags/.

The scheduling policy (operators/scheduling.py) places and orders it exactly like a real
benchmark run: it predicts the job's length from `spec` (times `time_scale`, so that a
job of minutes can stand in as seconds), picks the worker pool, sets the priority; the task
records that decision in the results database, as a real run's stages do.
`inferbench_sched_job` is one task per job; `inferbench_sched_job_steps` is the same job as
three tasks in a row, where a job holding its worker between its tasks is the scheduler's
doing, not the pool's slot limit alone.
"""

from __future__ import annotations

import time

from airflow.sdk import DAG, Param, get_current_context, task

from inferbench.scheduling.workers import MAX_ACTIVE_RUNS

DAG_ID = "inferbench_sched_job"
STEPS_DAG_ID = "inferbench_sched_job_steps"  # the same job as three tasks in a row

PARAMS = {
    "spec": Param({}, type="object", description="The benchmark spec being stood in for."),
    "sleep_s": Param(1.0, type="number", minimum=0, maximum=3600,
                     description="How long the job holds its worker (its true length)."),
    "time_scale": Param(1.0, type="number", exclusiveMinimum=0,
                        description="Multiplies the spec's predicted length."),
    "label": Param("", type="string", description="Free label (the benchmark's job id)."),
}


def standin(dag_id: str, steps: int, description: str) -> DAG:
    """A stand-in job of `steps` tasks in a row, sharing `sleep_s` equally."""
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=None,
        catchup=False,
        max_active_runs=MAX_ACTIVE_RUNS,
        params=PARAMS,
        tags=["inferbench", "scheduling", "benchmark"],
        doc_md=__doc__,
    ) as dag:

        @task
        def work(params: dict | None = None) -> float:
            from operators.scheduling import record_decision

            record_decision(get_current_context())
            sleep_s = float((params or {})["sleep_s"]) / steps
            time.sleep(sleep_s)
            return sleep_s

        previous = None
        for step in range(steps):
            current = work.override(task_id="work" if step == 0 else f"work_{step + 1}")()
            if previous is not None:
                previous >> current
            previous = current
    return dag


standin(DAG_ID, 1, "Stand-in benchmark job for the scheduling policies (sleeps)")
standin(STEPS_DAG_ID, 3, "Stand-in benchmark job of three tasks in a row (sleeps)")
