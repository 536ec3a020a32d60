"""A discrete-event simulator of the same policies (the same `place`, `order_key` and
weights as the Airflow cluster policy), for scale: thousands of jobs on 100 workers.

Model of the real scheduler: a job becomes eligible `eligible_delay_s` after it is submitted
(the scheduler must first see its run), a worker that finishes a job is free again after
`gap_s` (the scheduler's loop and the next task's start), and a free worker starts its
eligible job with the highest priority weight (ties: the earlier submission, as Airflow's
run order does). Placement happens at submission, from what each worker has queued then;
under a stealing policy a free worker with an empty queue then takes the first eligible job
waiting on a busy worker.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from inferbench.scheduling.observe import worker_orders
from inferbench.scheduling.policies import (
    DEFAULT_AGING_RATE,
    Policy,
    Waiting,
    WorkerLoad,
    order_key,
    place,
    priority_weight,
    steal,
)
from inferbench.scheduling.workers import worker_names


@dataclass(frozen=True)
class SimJob:
    label: str
    submitted_s: float
    predicted_s: float
    actual_s: float
    decided_s: float | None = None  # when the policy keyed it (default: submitted_s)


@dataclass(frozen=True)
class SimResult:
    label: str
    worker: str
    submitted_s: float
    start_s: float
    end_s: float
    priority_weight: int

    @property
    def jct_s(self) -> float:
        return self.end_s - self.submitted_s


def simulate(jobs: Sequence[SimJob], n_workers: int, policy: Policy,
             aging_rate: float = DEFAULT_AGING_RATE, gap_s: float = 1.0,
             eligible_delay_s: float = 1.0,
             placements: Mapping[str, str] | None = None,
             last_worker: str | None = None,
             available_from: Mapping[str, float] | None = None) -> list[SimResult]:
    """Run the jobs; `placements` (label -> worker) replays recorded placements instead of
    placing (to check ordering alone against a real run); `available_from` (worker -> time)
    holds a worker back until then (a replay: when the real scheduler first started a task
    there)."""
    workers = worker_names(n_workers)
    # A replay names its workers as the recorded run did (older runs: `worker-N`).
    workers += sorted(set((placements or {}).values()) - set(workers))
    free_at = {w: (available_from or {}).get(w, 0.0) for w in workers}
    running: dict[str, tuple[SimJob, float] | None] = dict.fromkeys(workers)
    queues: dict[str, list] = {w: [] for w in workers}  # heap of (-weight, submitted, i)
    placed: dict[str, list[SimJob]] = {w: [] for w in workers}  # waiting on each worker
    weight: dict[str, int] = {}
    results: list[SimResult] = []
    # Events: (time, kind, seq, payload); kind 0 = a job finishes, 1 = a submission,
    # 2 = a job becomes eligible, 3 = a worker is free again (same-time order matters).
    events: list = []
    seq = 0
    ref_s: float | None = None  # start of the current busy period (keys count from it)
    for job in sorted(jobs, key=lambda j: j.submitted_s):
        heapq.heappush(events, (job.submitted_s, 1, seq, job))
        seq += 1
    index = {j.label: i for i, j in enumerate(jobs)}
    for w, t in free_at.items():
        if t > 0:  # a held-back worker looks at its queue the moment it is available
            heapq.heappush(events, (t, 3, seq, w))
            seq += 1

    def steal_into(w: str, now: float) -> None:
        waiting = [Waiting(jobs[i].label, v, -neg_weight, submitted)
                   for v in workers for neg_weight, submitted, i in queues[v]]
        busy = {v for v in workers if running[v] is not None or free_at[v] > now}
        taken = steal(policy, w, waiting, busy)
        if taken is None:
            return
        v = taken.worker
        entry = next(e for e in queues[v] if jobs[e[2]].label == taken.label)
        queues[v].remove(entry)
        heapq.heapify(queues[v])
        placed[v].remove(jobs[entry[2]])
        placed[w].append(jobs[entry[2]])
        heapq.heappush(queues[w], entry)

    def try_start(w: str, now: float) -> None:
        nonlocal seq
        if running[w] is not None or free_at[w] > now:
            return
        if placements is None:
            steal_into(w, now)
        if not queues[w]:
            return
        _, _, i = heapq.heappop(queues[w])
        job = jobs[i]
        placed[w].remove(job)
        running[w] = (job, now)
        end = now + job.actual_s
        results.append(SimResult(job.label, w, job.submitted_s, now, end, weight[job.label]))
        heapq.heappush(events, (end, 0, seq, w))
        seq += 1

    while events:
        now, kind, _, payload = heapq.heappop(events)
        if kind == 1:
            job: SimJob = payload
            if placements is not None:
                w = placements[job.label]
            else:
                loads = {}
                for v in workers:
                    work = sum(j.predicted_s for j in placed[v])
                    n = len(placed[v])
                    if running[v] is not None:
                        rj, started = running[v]
                        work += max(0.0, rj.predicted_s - (now - started))
                        n += 1
                    loads[v] = WorkerLoad(n, work)
                w = place(policy, workers, loads, last_worker)
            last_worker = w
            if all(not placed[v] and running[v] is None for v in workers):
                ref_s = job.decided_s or job.submitted_s
            key = order_key(policy, job.predicted_s, job.decided_s or job.submitted_s,
                            aging_rate, ref_s)
            weight[job.label] = priority_weight(key)
            placed[w].append(job)
            heapq.heappush(events, (now + eligible_delay_s, 2, seq, (w, job)))
            seq += 1
        elif kind == 2:
            w, job = payload
            heapq.heappush(queues[w], (-weight[job.label], job.submitted_s, index[job.label]))
            # Start only after every job eligible at this instant has joined the queue.
            heapq.heappush(events, (now, 3, seq, w))
            seq += 1
        elif kind == 0:
            w = payload
            running[w] = None
            free_at[w] = now + gap_s
            heapq.heappush(events, (free_at[w], 3, seq, w))
            seq += 1
        else:
            try_start(payload, now)
    return results


# Each worker's jobs in start order: the same reading for simulated and real records.
orders = worker_orders


def replay(records: Sequence[Mapping], n_workers: int, policy: Policy,
           aging_rate: float = DEFAULT_AGING_RATE,
           eligible_delay_s: float = 1.0) -> tuple[dict[str, list[str]], float]:
    """Replay a real run (records as benchmarks/scheduling/run.py stores them: label,
    worker, submitted_s, start_s, end_s, predicted_s; optional decided_s, the time the
    cluster policy keyed the job): its submission times, placements and
    measured task durations, with the scheduler gap set to the median gap measured between
    consecutive jobs on a worker, and each worker held back until the real scheduler first
    started a task on it. Returns the simulated per-worker order and that gap."""
    by_worker: dict[str, list[Mapping]] = {}
    for r in sorted(records, key=lambda r: r["start_s"]):
        by_worker.setdefault(r["worker"], []).append(r)
    gaps = sorted(b["start_s"] - a["end_s"] for js in by_worker.values()
                  for a, b in zip(js, js[1:], strict=False))
    gap = gaps[len(gaps) // 2] if gaps else 1.0
    jobs = [SimJob(r["label"], r["submitted_s"], r["predicted_s"], r["end_s"] - r["start_s"],
                   r.get("decided_s")) for r in records]
    # After a burst of triggers the scheduler's first loops are slow (it is still creating
    # runs): when it first started a task on each worker is measured, like the durations.
    first_start = {w: js[0]["start_s"] for w, js in by_worker.items()}
    sim = simulate(jobs, n_workers, policy, aging_rate, gap_s=gap,
                   eligible_delay_s=eligible_delay_s,
                   placements={r["label"]: r["worker"] for r in records},
                   available_from=first_start)
    return orders(sim), gap
