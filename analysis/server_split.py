"""Where a request's time goes: the link each way, the server's queue, its compute, and
the rest.

The server reports, per point, the mean queue and compute time of the requests it completed
(backends/server_stats.py); through an emulated link (spec.network) each request's transmit
time each way is the link's delay plus its bytes at the link's bandwidth; the client
measured each request's latency from its scheduled send, and the link the time requests
waited for it (behind others for its bandwidth; a new connection's handshake). What none
of them accounts for, mean latency - the known parts, is the rest: HTTP/gRPC handling
outside the model's queue, the client's own delay (late sends included, since latency counts
from the schedule). Means add up; tail percentiles do not, so the split is of the mean only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The parts in the order a request meets them; each is a point record's column.
PARTS = (("link wait", "link_wait_ms"), ("transmit up", "transmit_up_ms"),
         ("queue", "server_queue_ms"), ("compute", "server_compute_ms"),
         ("transmit down", "transmit_down_ms"))


@dataclass(frozen=True)
class LatencySplit:
    mean_ms: float
    queue_ms: float | None
    compute_ms: float | None
    transmit_up_ms: float | None = None
    transmit_down_ms: float | None = None
    link_wait_ms: float | None = None

    def known_ms(self) -> dict[str, float | None]:
        """Each part by name (None: not measured for this point)."""
        return {name: getattr(self, column.removeprefix("server_"))
                for name, column in PARTS}

    @property
    def rest_ms(self) -> float:
        """Protocol handling and client time (never below zero: the server's
        clock and the client's can disagree by a few microseconds)."""
        return max(0.0, self.mean_ms - sum(v for v in self.known_ms().values() if v))

    def shares_pct(self) -> dict[str, float | None]:
        """Every part and the rest as percentages of their sum."""
        parts = {**self.known_ms(), "rest": self.rest_ms}
        total = sum(v for v in parts.values() if v)
        return {k: (None if v is None else 100 * v / total if total > 0 else 0.0)
                for k, v in parts.items()}


def latency_split(row: Mapping[str, Any]) -> LatencySplit | None:
    """The split of one point record, or None where neither the server nor a link
    reported anything of it."""
    mean = (row.get("latency_ms") or {}).get("mean")
    values = {column: row.get(column) for _, column in PARTS}
    if mean is None or all(v is None for v in values.values()):
        return None
    return LatencySplit(float(mean), *(None if values[c] is None else float(values[c])
                                       for c in ("server_queue_ms", "server_compute_ms",
                                                 "transmit_up_ms", "transmit_down_ms",
                                                 "link_wait_ms")))


SPLIT_HEADER = ["configuration", "server requests", "mean (ms)",
                *(f"{name} (ms)" for name, _ in PARTS), "rest (ms)", "shares (%)"]


def split_rows(records: Iterable[Mapping[str, Any]], label) -> list[list[Any]]:
    """Report rows (SPLIT_HEADER) for every point with a split: the configuration, its
    mean latency, each part ("-" where not measured), the rest, and the measured parts'
    shares in the order of the header."""
    rows = []
    for r in records:
        s = latency_split(r)
        if s is None:
            continue
        shares = " / ".join(f"{v:.0f}" for v in s.shares_pct().values() if v is not None)
        rows.append([label(r), r.get("server_requests"), round(s.mean_ms, 3),
                     *("-" if v is None else round(v, 3) for v in s.known_ms().values()),
                     round(s.rest_ms, 3), shares])
    return rows
