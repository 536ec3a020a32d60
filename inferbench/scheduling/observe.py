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
