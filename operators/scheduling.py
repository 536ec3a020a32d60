"""Airflow glue of the job scheduler: a cluster policy (`task_instance_mutation_hook`) that
puts every task of a scheduled DAG run into its worker's pool and gives it the run's
priority weight.

Why a cluster policy and not a PriorityWeightStrategy plugin: a strategy only returns a
priority weight; placement means setting the task instance's *pool*, which only the mutation
hook can do. The hook sees the DagRun (its conf is the spec), runs wherever task instances
are created (the api-server for REST triggers, the scheduler for cron runs and mapped
expansions) and is re-applied whenever Airflow refreshes a task instance from its task, so
one mechanism carries both decisions and nothing in the DAG files has to know about it.

Settings (Airflow config section [inferbench], so also AIRFLOW__INFERBENCH__* variables):
- sched_policy: rr_fcfs | rr_sjf | qa_sjf (default qa_sjf)
- sched_aging_rate: seconds of predicted length a job gains per second waited (default 0.1)
- sched_dags: comma-separated DAG ids whose runs are scheduled (default: the benchmark DAG
  and the stand-in job DAG)
Workers are the Airflow pools named worker-0, worker-1, ... (slots = 1 each); `inferbench
up` creates them (INFERBENCH_WORKERS, default 1); in the cluster, airflow-init does, and
each worker-N Celery worker listens on the queue of the same name, which the hook sets too.

A job's first task (a root of the DAG) gets the job's weight; its later tasks get a boost
over every first task, so a job that holds a worker keeps it between its tasks. That is a
strong preference, not a lock: see benchmarks/scheduling/README.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from inferbench.errors import InferBenchError
from inferbench.scheduling.policies import (
    DEFAULT_AGING_RATE,
    DEFAULT_POLICY,
    Policy,
    parse_policy,
    priority_weight,
)
from inferbench.scheduling.store import Decision

log = logging.getLogger(__name__)

SECTION = "inferbench"
DEFAULT_SCHED_DAGS = ("inferbench_benchmark", "inferbench_sched_job")
WORKER_POOL_PREFIX = "worker-"
DB_ENV = "INFERBENCH_DB_URL"
_CACHE_SIZE = 4096
_decisions: OrderedDict[tuple[str, str], Decision] = OrderedDict()


def _conf(key: str, fallback: str) -> str:
    from airflow.configuration import conf

    return conf.get(SECTION, key, fallback=fallback)


def policy() -> Policy:
    return parse_policy(_conf("sched_policy", DEFAULT_POLICY.value),
                        source="[inferbench] sched_policy (AIRFLOW__INFERBENCH__SCHED_POLICY)")


def aging_rate() -> float:
    raw = _conf("sched_aging_rate", str(DEFAULT_AGING_RATE))
    try:
        return float(raw)
    except ValueError:
        raise InferBenchError(f"[inferbench] sched_aging_rate {raw!r} is not a number; fix: "
                              "set e.g. 0.1") from None


def scheduled_dags() -> set[str]:
    raw = _conf("sched_dags", ",".join(DEFAULT_SCHED_DAGS))
    return {d.strip() for d in raw.split(",") if d.strip()}


@lru_cache(maxsize=1)
def _metadata_engine():
    """Our own engine on Airflow's metadata DB: reads only, and never the caller's session
    (the hook runs inside Airflow's transaction that is creating the run)."""
    from airflow.configuration import conf
    from sqlalchemy import create_engine

    return create_engine(conf.get("database", "sql_alchemy_conn"), pool_pre_ping=True)


def _sort_workers(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: int(n[len(WORKER_POOL_PREFIX):]))


def airflow_state(dag_ids: set[str]) -> tuple[list[str], dict[tuple[str, str], float | None]]:
    """The worker pools, and the active (queued or running) runs of the scheduled DAGs with
    the start time of their first task (None while nothing has started)."""
    from sqlalchemy import bindparam, text

    with _metadata_engine().connect() as conn:
        pools = [r[0] for r in conn.execute(text(
            "SELECT pool FROM slot_pool WHERE pool LIKE :p"), {"p": WORKER_POOL_PREFIX + "%"})
            if r[0][len(WORKER_POOL_PREFIX):].isdigit()]
        rows = conn.execute(text(
            "SELECT dr.dag_id, dr.run_id, MIN(ti.start_date) FROM dag_run dr "
            "LEFT JOIN task_instance ti ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id "
            "WHERE dr.state IN ('queued', 'running') AND dr.dag_id IN :dags "
            "GROUP BY dr.dag_id, dr.run_id").bindparams(bindparam("dags", expanding=True)),
            {"dags": sorted(dag_ids)}).all()
    active = {(d, r): (s.timestamp() if s is not None else None) for d, r, s in rows}
    return _sort_workers(pools), active


def job_spec(conf: dict[str, Any]) -> tuple[Any, float]:
    """The spec of a run and the time scale of its prediction. The benchmark DAG's conf is
    the spec itself (missing fields take the DAG's defaults, as its Params do); a stand-in
    job's conf wraps it: {"spec": {...}, "time_scale": 0.05, ...}."""
    from inferbench.spec import example_spec, parse_spec

    if "spec" in conf:
        raw, scale = conf["spec"], float(conf.get("time_scale", 1.0))
    else:
        raw, scale = {**example_spec().model_dump(mode="json"), **conf}, 1.0
    return parse_spec(raw, source="DAG-run conf"), scale


def predicted_seconds(conf: dict[str, Any], results_url: str) -> float:
    from inferbench import perfdb
    from inferbench.scheduling.history import similar_runs
    from inferbench.scheduling.predictor import predict

    spec, scale = job_spec(conf)
    with perfdb.engine(results_url).connect() as conn:
        history = similar_runs(conn, spec)
    return predict(spec, history).total_s * scale


def decision_for(dag_id: str, run_id: str, conf: dict[str, Any]) -> Decision:
    cached = _decisions.get((dag_id, run_id))
    if cached is not None:
        return cached
    from inferbench import perfdb
    from inferbench.scheduling.store import decide

    url = os.environ.get(DB_ENV)
    if not url:
        raise InferBenchError(f"the scheduling policy needs the results database: {DB_ENV} "
                              "is not set in the Airflow components' environment; fix: set "
                              "it (`inferbench up` does) or remove airflow_local_settings.py")
    predicted = predicted_seconds(conf, url)
    workers, active = airflow_state(scheduled_dags())
    if not workers:
        raise InferBenchError("no worker pools (worker-0, worker-1, ...) exist in Airflow; "
                              "fix: run `inferbench up` or create them with "
                              "`airflow pools set worker-0 1 'GPU worker 0'`")
    with perfdb.engine(url).begin() as conn:
        decision = decide(conn, dag_id=dag_id, run_id=run_id, predicted_s=predicted,
                          policy=policy(), aging_rate=aging_rate(), workers=workers,
                          active=active, now_s=time.time())
    _decisions[(dag_id, run_id)] = decision
    while len(_decisions) > _CACHE_SIZE:
        _decisions.popitem(last=False)
    log.info("scheduled %s/%s on %s (predicted %.1f s, policy %s, weight %d)", dag_id,
             run_id, decision.worker, decision.predicted_s, decision.policy,
             decision.priority_weight)
    return decision


def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
    """Cluster policy: the run's worker pool and priority weight on each of its tasks."""
    if dag_run is None or dag_run.dag_id not in scheduled_dags():
        return  # TaskInstance.__init__ calls us without a run; the creator calls again
    decision = decision_for(dag_run.dag_id, dag_run.run_id, dict(dag_run.conf or {}))
    task = getattr(task_instance, "task", None)
    continuation = bool(getattr(task, "upstream_task_ids", None))
    task_instance.pool = decision.worker
    task_instance.pool_slots = 1
    # The worker's Celery queue has the pool's name (docker-compose.yaml: `--queues
    # worker-N`), so in the cluster the task also runs on that worker's host; the
    # LocalExecutor of the embedded default ignores queues.
    task_instance.queue = decision.worker
    task_instance.priority_weight = priority_weight(decision.order_key, continuation)
