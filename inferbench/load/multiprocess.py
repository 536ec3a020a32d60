"""One open-loop point issued from several processes, when one core is not enough.

Every process draws the same logged schedule and keeps the arrivals that fall to it
(`arrivals.partition_offsets_ns`: each arrival given to one process uniformly at random),
so together they send exactly the one logged stream; a Poisson stream of rate R splits
into N Poisson streams of rate R/N (thinning). All processes share one schedule origin on
the wall clock; their records are merged in scheduled order.

Each process applies the stop rule to its own share (min duration, min_requests / N, the
cap); the window-stability rule is not applied across processes (it is turned off in the
children, and the merged records say so with `stable = None`).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from dataclasses import replace

from inferbench.load.arrivals import Schedule, partition_offsets_ns
from inferbench.load.runner import (
    DEFAULT_WAITER,
    PhaseRecords,
    Request,
    ScheduleFactory,
    StopRule,
    run_point,
)

_FIELDS = ("scheduled_ns", "sent_ns", "first_byte_ns", "done_ns", "status", "bytes_sent",
           "bytes_received", "payload")


def _child(conn, requests: list[Request], schedule: ScheduleFactory, parts: int, part: int,
           seed: int, warmup_s: float, rule: StopRule, timeout_s: float, waiter: str,
           start_at_ns: int) -> None:
    def mine(s: int) -> Schedule:
        full = schedule(s)
        # The owner draw uses a seed of its own, the same in every process.
        return Schedule(partition_offsets_ns(full.offsets_ns, parts, part, s + 7_777_777),
                        None, full.play_to_end)

    try:
        records = run_point(requests, schedule=mine, seed=seed, warmup_s=warmup_s, rule=rule,
                            request_timeout_s=timeout_s, waiter=waiter,
                            start_at_ns=start_at_ns)
        conn.send(records)
    except Exception as exc:  # the parent re-raises it with the process named
        conn.send(exc)
    finally:
        conn.close()


def run_point_processes(requests: list[Request], *, schedule: ScheduleFactory, processes: int,
                        seed: int, warmup_s: float, rule: StopRule, request_timeout_s: float,
                        waiter: str = DEFAULT_WAITER) -> PhaseRecords:
    """Measure one open-loop point with `processes` issuers; merged records."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes!r}")
    ctx = multiprocessing.get_context("fork")  # the schedule factory is a closure
    # Time for every child to start and warm up before the common origin.
    start_at_ns = time.time_ns() + int((warmup_s + 1.0) * 1e9)
    child_rule = replace(rule, min_requests=math.ceil(rule.min_requests / processes),
                         stability_windows=0)
    pipes, children = [], []
    for part in range(processes):
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(
            child_end, requests, schedule, processes, part, seed, warmup_s, child_rule,
            request_timeout_s, waiter, start_at_ns), daemon=True)
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        children.append(proc)
    results = []
    for part, (pipe, proc) in enumerate(zip(pipes, children, strict=True)):
        try:
            got = pipe.recv()
        except EOFError:
            got = RuntimeError(f"issuer process {part} died (exit code {proc.exitcode})")
        proc.join()
        if isinstance(got, Exception):
            raise RuntimeError(f"issuer process {part} of {processes} failed: {got}") from got
        results.append(got)
    return merge(results)


def merge(parts: list[PhaseRecords]) -> PhaseRecords:
    """Records of several issuers as one point, in scheduled order."""
    merged = PhaseRecords()
    rows = sorted(zip(*(sum((getattr(p, f) for p in parts), []) for f in _FIELDS),
                      strict=True))
    for i, f in enumerate(_FIELDS):
        setattr(merged, f, [row[i] for row in rows])
    merged.started_ns = min(p.started_ns for p in parts)
    merged.ended_ns = max(p.ended_ns for p in parts)
    merged.client_cpu_s = sum(p.client_cpu_s for p in parts)
    merged.resent_requests = sum(p.resent_requests for p in parts)
    merged.complete = all(p.complete for p in parts)
    reasons = sorted({p.stop_reason for p in parts})
    merged.stop_reason = reasons[0] if len(reasons) == 1 else "+".join(reasons)
    merged.stable = None
    return merged
