"""A job's scheduling decision: the worker it goes to, its order key and priority weight, and
what placement saw. Made once per job, when Airflow creates the job's run, as a pure function
of the jobs still active; nothing here touches a database or Airflow.

operators/scheduling.py gathers the active jobs from Airflow, keeps each decision on the
Airflow side while its run is active (later decisions read it back) and the run's own tasks
record it in the results database (store.py). The JSON form below is what travels between
the two.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import TypeVar

from inferbench.errors import InferBenchError
from inferbench.scheduling.policies import (
    Policy,
    WorkerLoad,
    first_come,
    order_key,
    place,
    priority_weight,
    same_class,
)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Decision:
    dag_id: str
    run_id: str
    policy: str
    worker: str  # the Airflow pool (and Celery queue) of every task of the run
    predicted_s: float
    order_key: float  # smaller runs first
    priority_weight: int  # of the run's first task
    submitted_s: float  # when the decision was made, Unix seconds
    key_ref_s: float  # the reference time the key counts from
    loads: dict[str, list[float]]  # what placement saw: worker -> [active jobs, work s]
    # Waiting for `worker`, which another job holds: the run's tasks are in the hold pool
    # (workers.HOLD_POOL) until the worker is handed to it. Always False in the record: a
    # run's tasks run, and record it, only once it holds its worker.
    held: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Decision:
        try:
            data = json.loads(raw)
            return cls(**{f.name: data[f.name] for f in fields(cls)
                          if f.name in data or f.default is MISSING})
        except (ValueError, TypeError, KeyError) as e:
            raise InferBenchError(f"not a scheduling decision ({type(e).__name__}: {e}): "
                                  f"{str(raw)[:200]!r}") from None


@dataclass(frozen=True)
class ActiveJob:
    """A job placed earlier whose run has not ended."""

    decision: Decision
    started_s: float | None  # start of its first task, Unix seconds; None while it waits


def worker_loads(workers: Sequence[str], active: Iterable[ActiveJob],
                 now_s: float) -> dict[str, WorkerLoad]:
    """Load of each worker: a waiting job counts its whole predicted length, a running one
    what is left of it (never below zero: a job past its prediction still holds the worker,
    it just counts no more queued work). Jobs on workers not in `workers` do not count."""
    loads = {w: [0, 0.0] for w in workers}
    for job in active:
        d = job.decision
        if d.worker not in loads:
            continue
        left = d.predicted_s if job.started_s is None else max(
            0.0, d.predicted_s - (now_s - job.started_s))
        loads[d.worker][0] += 1
        loads[d.worker][1] += left
    return {w: WorkerLoad(int(n), work) for w, (n, work) in loads.items()}


def busy_period_start(active: Iterable[ActiveJob], now_s: float) -> float:
    """The reference of order keys: shared with every active job (so all jobs that can wait
    side by side compare on one scale), or now when nothing is active."""
    return min((job.decision.key_ref_s for job in active), default=now_s)


def decide(*, dag_id: str, run_id: str, predicted_s: float, policy: Policy, aging_rate: float,
           workers: Sequence[str], active: Sequence[ActiveJob], last_worker: str | None,
           now_s: float) -> Decision:
    """A new job's decision. `active`: the jobs placed before it whose runs are active;
    `last_worker`: where the job placed just before it went (round-robin continues there)."""
    loads = worker_loads(workers, active, now_s)
    worker = place(policy, workers, loads, last_worker)
    ref_s = busy_period_start(active, now_s)
    key = order_key(policy, predicted_s, now_s, aging_rate, ref_s)
    return Decision(dag_id=dag_id, run_id=run_id, policy=policy.value, worker=worker,
                    predicted_s=predicted_s, order_key=key, priority_weight=priority_weight(key),
                    submitted_s=now_s, key_ref_s=ref_s,
                    loads={w: [ld.active_jobs, round(ld.queued_work_s, 3)]
                           for w, ld in loads.items()})


def dispatch(policy: Policy, jobs: Mapping[K, Decision],
             workers: Sequence[str]) -> dict[K, Decision]:
    """Hand free workers the jobs they start next. `jobs`: the active jobs' decisions, those
    holding their worker (`held` False) and those waiting for one (`held` True); a worker of
    `workers` is free when no job holds it. Waiting jobs are taken in the policy's order
    (policies.first_come): each goes to its own worker if that is free, or under a stealing
    policy to the first free worker of its class. Returns the waiting jobs that now hold a
    worker, with that worker and `held` False."""
    held = {d.worker for d in jobs.values() if not d.held}
    free = [w for w in workers if w not in held]
    waiting = sorted(((key, d) for key, d in jobs.items() if d.held),
                     key=lambda kd: first_come(kd[1]))
    handed: dict[K, Decision] = {}
    for key, d in waiting:
        if d.worker in free:
            worker = d.worker
        elif policy.steals:
            worker = next((w for w in free if same_class(w, d.worker)), None)
        else:
            continue
        if worker is not None:
            handed[key] = replace(d, worker=worker, held=False)
            free.remove(worker)
    return handed
