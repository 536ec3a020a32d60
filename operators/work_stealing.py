"""The DAG-run listener that keeps placement open until a job starts: when a scheduled run
ends, the worker it leaves free may take a waiting run (operators/scheduling.py,
`steal_after`; a no-op unless the policy steals). Airflow calls DAG-run listeners in the
scheduler, inside the transaction that ends the run, and logs (never raises) what they
raise; the plugin in operators/trigger_check.py registers this module."""

from __future__ import annotations

from typing import Any

from airflow.listeners import hookimpl


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    from operators.scheduling import steal_after

    steal_after(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    from operators.scheduling import steal_after

    steal_after(dag_run)
