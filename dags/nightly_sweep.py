"""InferBench nightly sweep: every night, expand a sweep file (models x platforms x batch
sizes x rates) into benchmark runs and trigger them, shortest predicted first.

Each triggered run of `inferbench_benchmark` carries the sweep's label (`sweep_id`); the
cluster policy (operators/scheduling.py) places it on a worker pool and sets its priority
as Airflow creates it. Triggers go one at a time in the expanded order, so the runs also
start shortest first where the benchmark DAG admits one run at a time.
Nothing here touches a database or reads the sweep file at parse time.
"""

from __future__ import annotations

import re
from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, task

from inferbench.pipeline import BENCHMARK_DAG_ID

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SWEEP = "examples/sweep-nightly.json"  # relative paths are from the checkout root

with DAG(
    dag_id="inferbench_nightly_sweep",
    description="Nightly grid of benchmark runs, placed and prioritised by the job scheduler",
    schedule="0 2 * * *",  # 02:00 UTC, when nobody is waiting for the GPUs
    catchup=False,
    # Off until someone switches it on (UI toggle, or `airflow dags unpause`): unpaused, the
    # scheduler would start the latest night's grid the moment the DAG is first parsed, ahead
    # of the benchmark a user just triggered on the same workers.
    is_paused_upon_creation=True,
    max_active_runs=1,
    params={"sweep_file": Param(DEFAULT_SWEEP, type="string", minLength=1,
                                description="Sweep file (JSON): name, base spec fields, grid "
                                "of models, platforms, batch_sizes, rates_rps.")},
    tags=["inferbench", "scheduling"],
    doc_md=__doc__,
) as dag:

    @task(task_id="expand")
    def expand(params: dict | None = None, run_id: str | None = None) -> list[dict]:
        from inferbench.scheduling.sweep import expand_sweep, load_sweep
        from inferbench.user_files import data_dirs

        path = Path(params["sweep_file"])
        # The project's example sweeps, or a file a user put in the data directories.
        data = load_sweep(path if path.is_absolute() else ROOT / path,
                          dirs=[ROOT / "examples", *data_dirs()])
        name = str(data.get("name", "sweep")) if isinstance(data, dict) else "sweep"
        sweep_id = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{run_id}")[:80]
        runs = expand_sweep(data, sweep_id, source=str(path))
        for r in runs:
            print(f"{r.run_id}: {r.conf['name']} predicted {r.predicted_s:.0f} s")
        return [{"trigger_run_id": r.run_id, "conf": r.conf} for r in runs]

    TriggerDagRunOperator.partial(
        task_id="trigger", trigger_dag_id=BENCHMARK_DAG_ID, wait_for_completion=False,
        max_active_tis_per_dagrun=1,  # in the expanded (shortest first) order
    ).expand_kwargs(expand())
