"""Where a request's time goes: the server's queue, its compute, and the rest.

The server reports, per point, the mean queue and compute time of the requests it completed
(backends/server_stats.py); the client measured each request's latency from its scheduled
send. Their difference, mean latency - queue - compute, is what neither part of the server
accounts for: transmission, HTTP/gRPC handling outside the model's queue, the client's own
delay (late sends included, since latency counts from the schedule). Means add up; tail
percentiles do not, so the split is of the mean only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LatencySplit:
    mean_ms: float
    queue_ms: float
    compute_ms: float

    @property
    def rest_ms(self) -> float:
        """Transmit, protocol handling and client time (never below zero: the server's
        clock and the client's can disagree by a few microseconds)."""
        return max(0.0, self.mean_ms - self.queue_ms - self.compute_ms)

    def shares_pct(self) -> tuple[float, float, float]:
        """Queue, compute and rest as percentages of their sum."""
        total = self.queue_ms + self.compute_ms + self.rest_ms
        if total <= 0:
            return (0.0, 0.0, 0.0)
        return (100 * self.queue_ms / total, 100 * self.compute_ms / total,
                100 * self.rest_ms / total)


def latency_split(row: Mapping[str, Any]) -> LatencySplit | None:
    """The split of one point record, or None where the server reported no statistics."""
    mean = (row.get("latency_ms") or {}).get("mean")
    queue, compute = row.get("server_queue_ms"), row.get("server_compute_ms")
    if mean is None or queue is None or compute is None:
        return None
    return LatencySplit(float(mean), float(queue), float(compute))


def split_rows(records: Iterable[Mapping[str, Any]], label) -> list[list[Any]]:
    """Report rows: configuration, mean latency, queue, compute, rest (ms) and their shares,
    for every point whose server reported statistics."""
    rows = []
    for r in records:
        s = latency_split(r)
        if s is None:
            continue
        q, c, rest = s.shares_pct()
        rows.append([label(r), r.get("server_requests"), round(s.mean_ms, 3),
                     round(s.queue_ms, 3), round(s.compute_ms, 3), round(s.rest_ms, 3),
                     f"{q:.0f} / {c:.0f} / {rest:.0f}"])
    return rows
