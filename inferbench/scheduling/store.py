"""Scheduling decisions, made once per job and kept in the results database.

`decide` is called for every task instance Airflow creates; the first call for a run
places it and fixes its order key, later calls (the run's other tasks, mapped tasks
expanded later, cleared tasks) read the stored decision, so all of a job's tasks land on
the same worker with the same key. Decisions are serialised by an advisory lock, so two
runs created at the same moment cannot both take the same idle worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, insert, select

from inferbench.perfdb import schema
from inferbench.scheduling.policies import (
    Policy,
    WorkerLoad,
    order_key,
    place,
    priority_weight,
)

_LOCK_ID = 727276  # pg_advisory_xact_lock id of scheduling decisions

RunKey = tuple[str, str]  # (dag_id, run_id)


@dataclass(frozen=True)
class Decision:
    dag_id: str
    run_id: str
    policy: str
    worker: str
    predicted_s: float
    order_key: float
    priority_weight: int
    submitted_s: float
    key_ref_s: float
    loads: dict[str, list[float]]


def _decision(row) -> Decision:
    return Decision(dag_id=row.dag_id, run_id=row.run_id, policy=row.policy, worker=row.worker,
                    predicted_s=row.predicted_s, order_key=row.order_key,
                    priority_weight=row.priority_weight,
                    submitted_s=row.submitted_at.timestamp(),
                    key_ref_s=row.key_ref_at.timestamp(), loads=row.loads)


def stored(conn: Connection, dag_id: str, run_id: str) -> Decision | None:
    t = schema.sched_jobs
    row = conn.execute(select(t).where(t.c.dag_id == dag_id, t.c.run_id == run_id)).first()
    return _decision(row) if row else None


def worker_loads(conn: Connection, workers: Sequence[str],
                 active: Mapping[RunKey, float | None], now_s: float) -> dict[str, WorkerLoad]:
    """Load of each worker from the active runs (key -> start time of its first task, Unix
    seconds, or None while it waits): a waiting job counts its whole predicted length, a
    running one what is left of it (never below zero: a job past its prediction still
    holds the worker, it just counts no more queued work)."""
    t = schema.sched_jobs
    loads = {w: [0, 0.0] for w in workers}
    run_ids = sorted({run_id for _, run_id in active})
    if not run_ids:
        return {w: WorkerLoad() for w in workers}
    rows = conn.execute(select(t.c.dag_id, t.c.run_id, t.c.worker, t.c.predicted_s)
                        .where(t.c.run_id.in_(run_ids))).all()
    for dag_id, run_id, worker, predicted_s in rows:
        if (dag_id, run_id) not in active or worker not in loads:
            continue
        started = active[(dag_id, run_id)]
        left = predicted_s if started is None else max(0.0, predicted_s - (now_s - started))
        loads[worker][0] += 1
        loads[worker][1] += left
    return {w: WorkerLoad(int(n), work) for w, (n, work) in loads.items()}


def busy_period_start(conn: Connection, active: Mapping[RunKey, float | None],
                      now_s: float) -> float:
    """The reference of order keys: shared with every active job (so all jobs that can wait
    side by side compare on one scale), or now when nothing is active."""
    t = schema.sched_jobs
    run_ids = sorted({run_id for _, run_id in active})
    if not run_ids:
        return now_s
    rows = conn.execute(select(t.c.dag_id, t.c.run_id, t.c.key_ref_at)
                        .where(t.c.run_id.in_(run_ids))).all()
    refs = [ref.timestamp() for dag_id, run_id, ref in rows if (dag_id, run_id) in active]
    return min(refs) if refs else now_s


def decide(conn: Connection, *, dag_id: str, run_id: str, predicted_s: float, policy: Policy,
           aging_rate: float, workers: Sequence[str], active: Mapping[RunKey, float | None],
           now_s: float) -> Decision:
    """The job's decision: the stored one, or a new one (placed, keyed and stored)."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
    existing = stored(conn, dag_id, run_id)
    if existing is not None:
        return existing
    t = schema.sched_jobs
    last = conn.execute(select(t.c.worker).order_by(t.c.seq.desc()).limit(1)).scalar()
    loads = worker_loads(conn, workers, active, now_s)
    worker = place(policy, workers, loads, last)
    ref_s = busy_period_start(conn, active, now_s)
    key = order_key(policy, predicted_s, now_s, aging_rate, ref_s)
    seq = conn.execute(select(func.coalesce(func.max(t.c.seq), 0))).scalar_one() + 1
    decision = Decision(dag_id=dag_id, run_id=run_id, policy=policy.value, worker=worker,
                        predicted_s=predicted_s, order_key=key,
                        priority_weight=priority_weight(key), submitted_s=now_s,
                        key_ref_s=ref_s, loads={w: [ld.active_jobs, round(ld.queued_work_s, 3)]
                               for w, ld in loads.items()})
    conn.execute(insert(t).values(
        dag_id=dag_id, run_id=run_id, seq=seq, policy=decision.policy, worker=worker,
        predicted_s=predicted_s, order_key=key, priority_weight=decision.priority_weight,
        submitted_at=datetime.fromtimestamp(now_s, UTC),
        key_ref_at=datetime.fromtimestamp(ref_s, UTC), loads=decision.loads))
    return decision
