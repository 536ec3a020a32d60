"""What the real scheduler did, from Airflow's own records: each job's worker (its tasks'
pool), first start, last end, and its completion time (JCT) from submission; plus the
checks that matter (no two jobs overlap on one worker) and the JCT statistics."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from inferbench.errors import InferBenchError


@dataclass(frozen=True)
class JobRecord:
    run_id: str
    label: str
    worker: str
    submitted_s: float  # Unix seconds, taken by the submitter just before the trigger
    start_s: float  # first task start
    end_s: float  # last task end
    predicted_s: float
    priority_weight: int

    @property
    def jct_s(self) -> float:
        return self.end_s - self.submitted_s


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def job_record(run_id: str, label: str, submitted_s: float, predicted_s: float,
               task_instances: Sequence[dict]) -> JobRecord:
    """One job from its task instances as the REST API returns them (all must be done)."""
    pools = {ti["pool"] for ti in task_instances}
    queues = {ti.get("queue") for ti in task_instances}
    if len(pools) != 1 or queues != pools:
        raise InferBenchError(f"run {run_id!r}: tasks in pools {sorted(pools)!r}, queues "
                              f"{sorted(map(str, queues))!r}; a job must keep to one worker "
                              "(its pool and its queue)")
    if any(ti["state"] != "success" or not ti["end_date"] for ti in task_instances):
        states = {ti["task_id"]: ti["state"] for ti in task_instances}
        raise InferBenchError(f"run {run_id!r} did not succeed: {states!r}")
    roots = min(task_instances, key=lambda ti: _ts(ti["start_date"]))
    return JobRecord(run_id=run_id, label=label, worker=pools.pop(), submitted_s=submitted_s,
                     start_s=_ts(roots["start_date"]),
                     end_s=max(_ts(ti["end_date"]) for ti in task_instances),
                     predicted_s=predicted_s, priority_weight=roots["priority_weight"])


def overlaps(jobs: Sequence[JobRecord]) -> list[tuple[str, str, str]]:
    """Pairs of jobs whose [first start, last end] intersect on the same worker."""
    found = []
    by_worker: dict[str, list[JobRecord]] = {}
    for j in jobs:
        by_worker.setdefault(j.worker, []).append(j)
    for worker, js in by_worker.items():
        js = sorted(js, key=lambda j: j.start_s)
        for a, b in zip(js, js[1:], strict=False):
            if b.start_s < a.end_s:
                found.append((worker, a.label, b.label))
    return found


def shared_share(jobs: Sequence[JobRecord]) -> float:
    """The share of the jobs' summed length (first start to last end) during which another
    job was in progress on the same worker: 0 when each worker ran its jobs one after the
    other, near 1 when its jobs' tasks interleaved throughout (each job then takes about as
    long as two run back to back, although no two tasks ever ran at once)."""
    total = shared = 0.0
    for a in jobs:
        total += a.end_s - a.start_s
        spans = sorted((max(a.start_s, b.start_s), min(a.end_s, b.end_s)) for b in jobs
                       if b is not a and b.worker == a.worker and b.start_s < a.end_s
                       and a.start_s < b.end_s)
        covered_to = a.start_s  # the union of the spans, walked in order
        for lo, hi in spans:
            shared += max(0.0, hi - max(lo, covered_to))
            covered_to = max(covered_to, hi)
    return shared / total if total > 0 else 0.0


def worker_orders(jobs: Sequence) -> dict[str, list[str]]:
    """Each worker's jobs (labels) in the order they started (anything with label, worker
    and start_s: a JobRecord, a simulator's SimResult)."""
    out: dict[str, list[str]] = {}
    for j in sorted(jobs, key=lambda j: j.start_s):
        out.setdefault(j.worker, []).append(j.label)
    return out


def nearest_rank(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def jct_stats(jct_s: Sequence[float]) -> dict[str, float]:
    return {"mean_s": statistics.fmean(jct_s), "p50_s": nearest_rank(jct_s, 50),
            "p95_s": nearest_rank(jct_s, 95), "max_s": max(jct_s), "n": len(jct_s)}
