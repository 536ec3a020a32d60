"""The scheduling policies as pure functions: where a job goes (placement) and in which
order a worker runs its queue (priority).

Policies (the setting `inferbench.sched_policy`):
- rr_fcfs: round-robin placement, first come first served on each worker (the baseline).
- rr_sjf:  round-robin placement, shortest predicted job first.
- qa_sjf:  queue-aware placement (an idle worker if there is one, else the worker whose
           queued predicted work is least), shortest predicted job first. This is the
           two-tier scheduler of the seed system (Algorithm 1).
- ws_sjf:  qa_sjf, and placement stays open until a job starts: a worker left with nothing
           to run takes (steals) the first waiting job of the busy workers' queues of its
           class. Placing at submission commits a job to a queue by *predicted* work;
           when a job runs shorter or longer than predicted, a worker can idle while
           others have jobs waiting. Stealing makes the placement work-conserving at
           dispatch time, which is what list scheduling needs to approach the
           shortest-first optimum.

Ordering is one number per job, the *key* (smaller runs first). SJF with aging uses
    key = predicted_s + aging_rate * (submitted_s - ref)
i.e. every second a job waits is worth `aging_rate` seconds of predicted length against
jobs that arrive later. Because the credit grows equally for all waiting jobs, the order of
two keys never changes while they wait, so the key can be fixed when the job is submitted:
Airflow's static priority weights carry it exactly, no periodic re-prioritisation needed.
The bound (the starvation guard): a job of length p can only be overtaken by jobs that
arrive less than p / aging_rate seconds after it, so its wait is bounded by the work that
arrives in that window plus the work queued before it; aging_rate = 0 is pure SJF (no bound).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from inferbench.errors import InferBenchError
from inferbench.platforms import DeviceKind
from inferbench.scheduling.workers import parse_worker_pool


class Policy(StrEnum):
    RR_FCFS = "rr_fcfs"
    RR_SJF = "rr_sjf"
    QA_SJF = "qa_sjf"
    WS_SJF = "ws_sjf"

    @property
    def steals(self) -> bool:
        """Whether an idle worker takes waiting jobs placed on others."""
        return self is Policy.WS_SJF


DEFAULT_POLICY = Policy.QA_SJF
DEFAULT_AGING_RATE = 0.1  # a job is overtaken only by jobs arriving within 10x its length
# Keys count from a reference time so that weights fit Airflow's 32-bit priority_weight at a
# fine resolution: the cluster policy uses the start of the current busy period (the
# submission of the oldest job still active, kept with every decision), so keys stay small
# however long the system lives. At 0.01 s resolution a busy period may last ~115 days
# under rr_fcfs (more under SJF) before weights clamp; a clamped weight only loses ordering
# among the clamped jobs. Airflow breaks equal weights arbitrarily for manually triggered
# runs (no logical date), hence the fine resolution.
KEY_EPOCH = datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # reference when none is given
KEY_RESOLUTION_S = 0.01
WEIGHT_BASE = 1_000_000_000  # weight of a first task with key 0
CONTINUATION_BOOST = 1_000_000_000  # a started job's ready tasks beat every first task
WEIGHT_MAX = 2**31 - 1


def parse_policy(value: str | Policy, source: str = "sched_policy") -> Policy:
    try:
        return Policy(value)
    except ValueError:
        raise InferBenchError(
            f"{source}: unknown scheduling policy {value!r}; expected one of "
            f"{', '.join(repr(p.value) for p in Policy)}; fix: set one of those") from None


@dataclass(frozen=True)
class WorkerLoad:
    """What a worker has: jobs placed on it and not finished, and their predicted work
    still to do (a running job counts its predicted length minus what it has run)."""

    active_jobs: int = 0
    queued_work_s: float = 0.0


def place(policy: Policy, workers: Sequence[str], loads: Mapping[str, WorkerLoad],
          last_worker: str | None) -> str:
    """The worker for a new job.

    Round-robin: the worker after the one the previous job went to. Queue-aware: the first
    idle worker (no active job), else the one with the least queued predicted work (ties:
    fewer jobs, then the lower index); work stealing places as queue-aware does."""
    if not workers:
        raise InferBenchError("no workers to place a job on; fix: create at least one pool")
    if policy in (Policy.RR_FCFS, Policy.RR_SJF):
        if last_worker not in workers:
            return workers[0]
        return workers[(list(workers).index(last_worker) + 1) % len(workers)]
    load = {w: loads.get(w, WorkerLoad()) for w in workers}
    for w in workers:
        if load[w].active_jobs == 0:
            return w
    return min(workers, key=lambda w: (load[w].queued_work_s, load[w].active_jobs,
                                       list(workers).index(w)))


@dataclass(frozen=True)
class Waiting:
    """A job placed on a worker that has not started."""

    label: str
    worker: str
    priority_weight: int
    submitted_s: float


def steal(policy: Policy, free_worker: str, waiting: Sequence[Waiting],
          busy_workers: Collection[str]) -> Waiting | None:
    """The job a free worker (nothing running) starts next under a stealing policy: the
    first, by weight then submission, of its own waiting jobs and those waiting on busy
    workers of its class (a job placed on a GPU worker may need the GPU). None when the
    policy does not steal, nothing waits, or its own first job is that job (no move)."""
    if not policy.steals:
        return None
    candidates = [w for w in waiting if w.worker == free_worker or (
        w.worker in busy_workers and same_class(w.worker, free_worker))]
    first = min(candidates, key=first_come, default=None)
    return None if first is None or first.worker == free_worker else first


class Queued(Protocol):
    """A job waiting for a worker, as ordering sees it (a Waiting, a Decision)."""

    @property
    def priority_weight(self) -> int: ...

    @property
    def submitted_s(self) -> float: ...


def first_come(job: Queued) -> tuple[int, float]:
    """The order in which waiting jobs start: higher weight, then earlier submission."""
    return -job.priority_weight, job.submitted_s


def same_class(worker: str, other: str) -> bool:
    """Whether two workers can run the same jobs (their hardware class is the same)."""
    return _worker_class(worker) == _worker_class(other)


def _worker_class(worker: str) -> DeviceKind | None:
    parsed = parse_worker_pool(worker)
    return parsed[0] if parsed else None


def order_key(policy: Policy, predicted_s: float, submitted_s: float,
              aging_rate: float = DEFAULT_AGING_RATE, ref_s: float = KEY_EPOCH) -> float:
    """Smaller runs first. submitted_s: submission time, Unix seconds; ref_s: the reference
    time keys count from (the same for every job that can wait alongside this one)."""
    if aging_rate < 0:
        raise InferBenchError(f"aging_rate {aging_rate!r} must be >= 0")
    since_epoch = submitted_s - ref_s
    if policy is Policy.RR_FCFS:
        return since_epoch
    return predicted_s + aging_rate * since_epoch


def priority_weight(key: float, continuation: bool = False) -> int:
    """Airflow priority weight (higher runs first) for a job's key. The job's first task gets
    the plain weight, which orders the jobs waiting for a worker; its later tasks
    (`continuation`) get a boost over every first task, so that a job's own tasks go before
    any other task that shares its pool (a run placed by default, without a decision). Jobs
    with decisions never share a worker's pool: a waiting job waits in the hold pool
    (operators/scheduling.py)."""
    weight = WEIGHT_BASE - math.floor(key / KEY_RESOLUTION_S + 0.5)
    weight = max(1, min(WEIGHT_BASE, weight))
    return min(WEIGHT_MAX, weight + (CONTINUATION_BOOST if continuation else 0))
