"""The scheduler's DAG-run listener that hands a worker on when the run holding it ends: the
worker goes to the policy's next run waiting for it (operators/scheduling.py,
`dispatch_after`). Airflow calls DAG-run listeners in the scheduler, inside the transaction
that ends the run, and logs (never raises) what they raise; the plugin in
operators/trigger_check.py registers this module."""

from __future__ import annotations

from typing import Any

from airflow.listeners import hookimpl


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    from operators.scheduling import dispatch_after

    dispatch_after(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    from operators.scheduling import dispatch_after

    dispatch_after(dag_run)
