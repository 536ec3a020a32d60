"""Airflow glue of the job scheduler: a cluster policy (`task_instance_mutation_hook`) that
puts every task of a scheduled DAG run into its worker's pool and queue and gives it the
run's priority weight, and `record_decision`, which the run's tasks call to write the
decision into the results database.

Why a cluster policy and not a PriorityWeightStrategy plugin: a strategy only returns a
priority weight; placement means setting the task instance's *pool*, which only the mutation
hook can do. The hook sees the DagRun (its conf is the spec), runs wherever task instances
are created (the api-server for REST triggers, the scheduler for cron runs and mapped
expansions) and is re-applied whenever Airflow refreshes a task instance from its task, so
one mechanism carries both decisions and nothing in the DAG files has to know about it.

Where a decision is made and kept. The hook runs inside the Airflow transaction that
creates the run's task instances and works only through that transaction's session and
Airflow's ORM models (Pool, DagRun, TaskInstance, Variable), never Airflow's table layout:
1. It predicts the job's length (the predictor reads past runs from the results database:
   a read, done before any lock is taken).
2. It locks the worker pools' rows (SELECT ... FOR NO KEY UPDATE, as Airflow's scheduler
   does in its critical section), so decisions are made one at a time and each sees the
   ones before it committed: two runs triggered at the same moment cannot both take the
   same idle worker. The scheduler's own pool lock is NOWAIT, so at worst it skips a loop.
3. It reads the active runs of the scheduled DAGs (DagRun, with their first task's start
   from TaskInstance) and their decisions, and decides (inferbench/scheduling/decisions.py).
4. It keeps the decision as an Airflow Variable, one per run (`decision_key`), added to the
   same session: the decision exists exactly when the run's task instances do (a rolled-back
   creation leaves nothing behind), later decisions and re-applications read it back, and
   the next decision deletes the Variables of runs that have ended.
The results database is written by the run's own tasks: `record_decision(context)` reads the
run's Variable through the Task SDK (in Airflow 3 the way a task reaches Airflow's state) and
upserts the decision into `sched_jobs` (a no-op when it is already there). Every task may
call it, so the record does not depend on which task runs first, and a run cleared and
placed again gets its new decision recorded.
Why not a field of the task instance: a running task sees neither its pool nor its priority
weight, and XComs are cleared when their task starts. Why not write the results database in
the hook: the hook runs in the request that creates the run, so a slow or unreachable
results database would block or fail run creation, and a rolled-back creation would leave a
decision behind for a run that does not exist.

Settings (Airflow config section [inferbench], so also AIRFLOW__INFERBENCH__* variables):
- sched_policy: rr_fcfs | rr_sjf | qa_sjf | ws_sjf (default qa_sjf)
- sched_aging_rate: seconds of predicted length a job gains per second waited (default 0.1)
- sched_dags: comma-separated DAG ids whose runs are scheduled (default: the benchmark DAG)
Workers are the Airflow pools named <class>-worker-<n> (slots = 1 each; the class, cpu or
gpu, is where the worker can run a model: inferbench/scheduling/workers.py); `inferbench up`
creates them (INFERBENCH_WORKERS, default 1, of this host's class) and the hold pool; in
the cluster, airflow-init does, and each worker's Celery worker listens on the queue of the
same name, which the hook sets too. A run is placed only among the workers of the class its spec's
`hardware` needs.

One job holds a worker at a time, whole. A run placed on a worker that another active run
holds waits with every task instance in the hold pool (workers.HOLD_POOL, no slots); when
the holding run ends, successful or failed, the scheduler calls `dispatch_after` (a DAG-run
listener, operators/run_end.py), which hands the worker to the policy's next waiting run
(decisions.dispatch: the highest priority weight of the runs waiting for it, or under a
stealing policy, ws_sjf, of those waiting on any busy worker of its class) by moving that
run's task instances into the worker's pool, in the scheduler's own transaction, under the
same pool-row lock as decisions at trigger. Why not the worker's pool with weights alone: a
job's next task becomes ready only in the scheduler loop after its previous task ended, and
a waiting job's first task, ready all along, would take the slot in between, so jobs on one
worker would interleave task by task (measured: benchmarks/scheduling/README.md, section 3).
Why not a task dependency: Airflow 3 does not serialize an operator's custom `deps`.
Weights still order the waiting runs (dispatch reads them from the decisions) and a job's
own tasks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from inferbench.errors import InferBenchError
from inferbench.pipeline import BENCHMARK_DAG_ID, DB_ENV
from inferbench.scheduling.decisions import ActiveJob, Decision, decide, dispatch
from inferbench.scheduling.policies import (
    DEFAULT_AGING_RATE,
    DEFAULT_POLICY,
    Policy,
    parse_policy,
    priority_weight,
)
from inferbench.scheduling.workers import (
    HOLD_POOL,
    POOL_SUFFIX,
    eligible_workers,
    no_worker_reason,
    sort_workers,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

T = TypeVar("T")

log = logging.getLogger(__name__)

SECTION = "inferbench"
DEFAULT_SCHED_DAGS = (BENCHMARK_DAG_ID,)
DECISION_VARIABLE_PREFIX = "inferbench_sched__"

RunKey = tuple[str, str]  # (dag_id, run_id)


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


def decision_key(dag_id: str, run_id: str) -> str:
    """The Airflow Variable that holds a run's decision. Hashed: run ids carry ':' and '+',
    and a DAG id and run id together can exceed the 250 characters of a Variable key (the
    Variable's description names the run)."""
    digest = hashlib.sha256(f"{dag_id}\n{run_id}".encode()).hexdigest()[:32]
    return DECISION_VARIABLE_PREFIX + digest


def _results_url() -> str:
    url = os.environ.get(DB_ENV)
    if not url:
        raise InferBenchError(f"the scheduling policy needs the results database: {DB_ENV} "
                              "is not set in this Airflow component's environment; fix: set "
                              "it (`inferbench up` does) or remove airflow_local_settings.py")
    return url


@lru_cache(maxsize=4)
def _results_engine(url: str) -> Engine:
    """One engine per URL for the life of the Airflow component (the hook runs once per new
    run, in long-lived processes)."""
    from inferbench import perfdb

    return perfdb.engine(url)


def job_spec(conf: dict[str, Any]) -> tuple[Any, float]:
    """The spec of a run and the time scale of its prediction. The benchmark DAG's conf is
    the spec itself (missing fields take the DAG's defaults, as its Params do); a conf may
    instead wrap a spec it stands in for, {"spec": {...}, "time_scale": 0.05, ...} (the
    scheduling benchmark's stand-in jobs, benchmarks/scheduling/dags/sched_job.py)."""
    from inferbench.spec import parse_spec, spec_from_conf

    if "spec" in conf:
        return parse_spec(conf["spec"], source="DAG-run conf"), float(conf.get("time_scale", 1.0))
    return spec_from_conf(conf), 1.0


def predicted_seconds(conf: dict[str, Any], results_url: str) -> float:
    """The run's predicted duration: the spec's prior, corrected by similar runs in the
    results database. A database that cannot be read only costs the correction: refusing to
    create the run over it would lose the user's benchmark for want of a hint."""
    from sqlalchemy.exc import SQLAlchemyError

    from inferbench.scheduling.history import similar_runs
    from inferbench.scheduling.predictor import predict

    spec, scale = job_spec(conf)
    try:
        with _results_engine(results_url).connect() as conn:
            history = similar_runs(conn, spec)
    except SQLAlchemyError as exc:
        log.warning("run history unavailable, predicting %r from its spec alone: the results "
                    "database could not be read (%s)", spec.name,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        history = []
    return predict(spec, history).total_s * scale


# --- Airflow's side: reads and writes through the session that is creating the run --------

def worker_pools(session: Session, lock: bool = False) -> list[str]:
    """The worker pools; with `lock`, their rows locked until the caller's transaction
    ends."""
    from airflow.models.pool import Pool
    from sqlalchemy import select

    query = (select(Pool.pool).where(Pool.pool.contains(POOL_SUFFIX, autoescape=True))
             .order_by(Pool.pool))
    if lock:
        query = query.with_for_update(key_share=True)
    return sort_workers(session.scalars(query).all())


def _pending_variables(session: Session) -> dict[str, Any]:
    """Decision Variables added in this transaction and not flushed yet (the scheduler may
    create several runs in one transaction; a run's later task instances come after its
    first one decided)."""
    from airflow.models.variable import Variable

    return {obj.key: obj for obj in session.new
            if isinstance(obj, Variable) and obj.key.startswith(DECISION_VARIABLE_PREFIX)}


def _read(variable: Any) -> Decision | None:
    try:
        return Decision.from_json(variable.val)
    except InferBenchError as e:  # edited by hand: decide again, and overwrite it
        log.warning("ignoring Airflow Variable %s: %s", variable.key, e)
        return None


def _kept(session: Session, keys: list[str]) -> dict[str, Decision]:
    """The decisions kept under these Variable keys (in this transaction or committed)."""
    from airflow.models.variable import Variable
    from sqlalchemy import select

    found = dict(_pending_variables(session))
    missing = [k for k in keys if k not in found]
    if missing:
        found.update((v.key, v) for v in session.scalars(
            select(Variable).where(Variable.key.in_(missing))))
    decisions = {k: _read(found[k]) for k in keys if k in found}
    return {k: d for k, d in decisions.items() if d is not None}


def _active_runs(session: Session, dag_ids: set[str]) -> dict[RunKey, float | None]:
    """The queued or running runs of these DAGs, with the start of their first task (None
    while nothing has started)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import DagRunState
    from sqlalchemy import and_, func, select

    rows = session.execute(
        select(DagRun.dag_id, DagRun.run_id, func.min(TaskInstance.start_date))
        .outerjoin(TaskInstance, and_(TaskInstance.dag_id == DagRun.dag_id,
                                      TaskInstance.run_id == DagRun.run_id))
        .where(DagRun.dag_id.in_(sorted(dag_ids)),
               DagRun.state.in_([DagRunState.QUEUED, DagRunState.RUNNING]))
        .group_by(DagRun.dag_id, DagRun.run_id)).all()
    return {(d, r): (s.timestamp() if s is not None else None) for d, r, s in rows}


def _last_worker(session: Session, dag_ids: set[str], dag_run: Any) -> str | None:
    """The worker of the newest run placed before this one (round-robin continues there):
    its task instances' queue, which names the worker placement chose whether the run holds
    it or waits for it (the pool of a waiting run's tasks is the hold pool)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import and_, select

    return session.scalar(
        select(TaskInstance.queue)
        .join(DagRun, and_(DagRun.dag_id == TaskInstance.dag_id,
                           DagRun.run_id == TaskInstance.run_id))
        .where(DagRun.dag_id.in_(sorted(dag_ids)), DagRun.id != dag_run.id,
               TaskInstance.queue.contains(POOL_SUFFIX, autoescape=True))
        .order_by(DagRun.id.desc()).limit(1))


def _keep(session: Session, decision: Decision, active_keys: set[str]) -> None:
    """Keep the decision in its run's Variable; delete those of runs no longer active."""
    from airflow.models.variable import Variable
    from sqlalchemy import delete, select

    key = decision_key(decision.dag_id, decision.run_id)
    description = (f"InferBench scheduling decision of {decision.dag_id} run "
                   f"{decision.run_id}: {decision.worker}, predicted {decision.predicted_s:.1f}"
                   f" s ({decision.policy}). Deleted once the run has ended.")
    existing = _pending_variables(session).get(key) or session.scalar(
        select(Variable).where(Variable.key == key))
    if existing is not None:
        existing.set_val(decision.to_json())
        existing.description = description
    else:
        session.add(Variable(key=key, val=decision.to_json(), description=description))
    session.execute(
        delete(Variable)
        .where(Variable.key.startswith(DECISION_VARIABLE_PREFIX, autoescape=True),
               Variable.key.not_in(sorted(active_keys | {key})))
        .execution_options(synchronize_session=False))


def _placed_runs(session: Session, dag_ids: set[str], other_than: RunKey
                 ) -> tuple[dict[RunKey, tuple[Decision, float | None]], set[str]]:
    """The active runs of these DAGs but `other_than` that have a kept decision, each with
    the start of its first task (None while nothing has started); and the decision Variable
    keys of all those active runs (what `_keep` must not delete)."""
    started = _active_runs(session, dag_ids)
    started.pop(other_than, None)
    keys = {run: decision_key(*run) for run in started}
    decided = _kept(session, list(keys.values()))
    placed = {run: (decided[keys[run]], start) for run, start in started.items()
              if keys[run] in decided}
    return placed, set(keys.values())


def _decide_in(session: Session, dag_run: Any) -> Decision:
    dag_id, run_id = dag_run.dag_id, dag_run.run_id
    key = decision_key(dag_id, run_id)
    kept = _kept(session, [key])
    if key in kept:
        return kept[key]
    conf = dict(dag_run.conf or {})
    predicted = predicted_seconds(conf, _results_url())
    pools = worker_pools(session, lock=True)
    if not pools:
        raise InferBenchError("no worker pools (cpu-worker-0, gpu-worker-0, ...) exist in "
                              "Airflow; fix: run `inferbench up` or create them with "
                              "`airflow pools set gpu-worker-0 1 'GPU worker 0'`")
    hardware = job_spec(conf)[0].hardware
    workers = eligible_workers(pools, hardware)
    if not workers:
        raise InferBenchError(no_worker_reason(hardware, pools))
    kept = _kept(session, [key])  # decided by another transaction while we waited
    if key in kept:
        return kept[key]
    dag_ids = scheduled_dags()
    placed, active_keys = _placed_runs(session, dag_ids, (dag_id, run_id))
    active_keys.add(key)
    chosen = policy()
    decision = decide(dag_id=dag_id, run_id=run_id, predicted_s=predicted, policy=chosen,
                      aging_rate=aging_rate(), workers=workers,
                      active=[ActiveJob(d, start) for d, start in placed.values()],
                      last_worker=_last_worker(session, dag_ids, dag_run), now_s=time.time())
    # The new run waits like any other until dispatch hands it a worker: one that is free
    # now, unless a run that waited longer comes first there.
    jobs = {run: d for run, (d, _) in placed.items()}
    jobs[(dag_id, run_id)] = replace(decision, held=True)
    handed = dispatch(chosen, jobs, pools)
    decision = handed.pop((dag_id, run_id), jobs[(dag_id, run_id)])
    _keep(session, decision, active_keys)
    log.info("scheduled %s/%s on %s%s (predicted %.1f s, policy %s, weight %d)", dag_id,
             run_id, decision.worker, ", waiting for it" if decision.held else "",
             decision.predicted_s, decision.policy, decision.priority_weight)
    _hand_over(session, handed, active_keys)
    return decision


def _in_run_session(dag_run: Any, work: Callable[[Session], T]) -> T:
    """`work` in the session that holds `dag_run` (Airflow's transaction creating or
    refreshing its tasks), or in a transaction of our own for a detached run."""
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as own, own.no_autoflush:
            return work(own)
    # No autoflush: Airflow is in the middle of adding the run's task instances.
    with session.no_autoflush:
        return work(session)


def decision_for(dag_run: Any) -> Decision:
    """The run's decision: the one kept for it, or a new one made and kept in the session
    that holds `dag_run`."""
    return _in_run_session(dag_run, lambda session: _decide_in(session, dag_run))


def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
    """Cluster policy: the run's worker pool and priority weight on each of its tasks."""
    if dag_run is None or dag_run.dag_id not in scheduled_dags():
        return  # TaskInstance.__init__ calls us without a run; the creator calls again
    try:
        decision = decision_for(dag_run)
    except Exception as exc:
        # Raising here would fail whatever is creating the run's tasks: the trigger's
        # request, or the scheduler's loop, which would then fail on this run over and
        # over. The run goes to the first worker pool at the lowest weight instead; its
        # first stage refuses a bad spec with the reason, in the task's log.
        log.error("no scheduling decision for %s/%s, placed by default: %s", dag_run.dag_id,
                  dag_run.run_id, " ".join(str(exc).split()) or type(exc).__name__)
        _place_by_default(task_instance, dag_run)
        return
    task = getattr(task_instance, "task", None)
    continuation = bool(getattr(task, "upstream_task_ids", None))
    task_instance.pool = HOLD_POOL if decision.held else decision.worker
    task_instance.pool_slots = 1
    # The worker's Celery queue has the pool's name (docker-compose.yaml: `--queues
    # gpu-worker-N`), so in the cluster the task also runs on that worker's host; the
    # LocalExecutor of the embedded default ignores queues.
    task_instance.queue = decision.worker
    task_instance.priority_weight = priority_weight(decision.order_key, continuation)


def _place_by_default(task_instance: Any, dag_run: Any) -> None:
    """The first worker pool (and its queue), weight 1; Airflow's defaults if none exists."""
    try:
        workers = _in_run_session(dag_run, worker_pools)
    except Exception:  # the metadata DB itself failing: leave the task as Airflow made it
        log.exception("could not read the worker pools")
        return
    if workers:
        task_instance.pool = task_instance.queue = workers[0]
        task_instance.pool_slots = 1
    task_instance.priority_weight = 1


# --- dispatch: a worker is handed to one waiting run when the run holding it ends ---------

def _hand_over(session: Session, handed: Mapping[RunKey, Decision],
               active_keys: set[str]) -> None:
    """Move each waiting run to the worker dispatch handed it: its kept decision (which
    later refreshes of its tasks, and its own tasks' record, read) and every task
    instance's pool and queue, in the caller's transaction."""
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    for (dag_id, run_id), decision in handed.items():
        _keep(session, decision, active_keys)
        for ti in session.scalars(select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)):
            ti.pool = ti.queue = decision.worker
        log.info("handed %s to waiting %s/%s", decision.worker, dag_id, run_id)


def _dispatch_in(session: Session, ended: Any) -> dict[RunKey, Decision]:
    # The states the scheduler has set in this transaction count: the ended run is no
    # longer active.
    session.flush()
    pools = worker_pools(session, lock=True)  # one decision at a time, as at trigger
    placed, active_keys = _placed_runs(session, scheduled_dags(), (ended.dag_id, ended.run_id))
    handed = dispatch(policy(), {run: d for run, (d, _) in placed.items()}, pools)
    _hand_over(session, handed, active_keys)
    return handed


def dispatch_after(ended: Any) -> dict[RunKey, Decision]:
    """Called when a scheduled run has ended, successful or failed (in the scheduler, in its
    transaction): every worker no run holds any more is handed the policy's next waiting
    run (decisions.dispatch). Returns the runs handed a worker, with their decisions.

    Every free worker, not only the one the ended run held: a hand-over lost to an error
    is made up at the next run end or trigger."""
    if ended.dag_id not in scheduled_dags():
        return {}
    return _in_run_session(ended, lambda session: _dispatch_in(session, ended))


# --- the task's side ------------------------------------------------------------------------

def record_decision(context: Mapping[str, Any]) -> Decision | None:
    """Record the scheduling decision of the running task's DAG run in the results database
    (table sched_jobs). Call it from a task's execute: `record_decision(context)`.

    Returns the decision, or None when the run has none (a DAG the policy does not
    schedule, or no cluster policy installed); raises when there is one but the results
    database is not configured. Cheap to repeat: an unchanged decision is not rewritten."""
    from airflow.sdk import Variable

    from inferbench import perfdb
    from inferbench.scheduling.store import record

    ti = context.get("ti")
    if ti is None:  # executed outside a DAG run (a test, `operator.execute` by hand)
        return None
    raw = Variable.get(decision_key(ti.dag_id, ti.run_id), default=None)
    if raw is None:
        return None
    decision = Decision.from_json(raw)
    url = os.environ.get(DB_ENV)
    if not url:
        raise InferBenchError(f"cannot record the scheduling decision of {ti.dag_id}/"
                              f"{ti.run_id}: {DB_ENV} is not set in the worker's environment; "
                              "fix: set it to the results database URL")
    engine = perfdb.engine(url)
    try:
        with engine.begin() as conn:
            if record(conn, decision):
                log.info("recorded the scheduling decision: %s (predicted %.1f s, weight %d)",
                         decision.worker, decision.predicted_s, decision.priority_weight)
    finally:
        engine.dispose()
    return decision
