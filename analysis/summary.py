"""Summary statistics of one measurement point from per-request timestamps.

Conventions (MLPerf LoadGen / wrk2): each request has ``scheduled_ns`` (when the
arrival process wanted it sent), ``sent_ns``, ``done_ns`` (-1 if it never
completed) and an HTTP ``status`` (200 = ok, 0 = no response).  Latency is
``done_ns - scheduled_ns``: measuring from the *scheduled* time charges the
queueing delay of a slow server to the server, avoiding coordinated omission.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.percentiles import (
    PERCENTILES,
    exact_percentile,
    exact_percentiles,
    percentile_key,
    quantile_ci,
)


def _no_latencies() -> np.ndarray:
    return np.empty(0, dtype=np.float64)


@dataclass(frozen=True)
class PointSummary:
    """Statistics of one measurement point (one platform x batch size x load level).

    ``latency_ms`` is :func:`analysis.percentiles.exact_percentiles` over the ok
    requests; ``p99_ci_ms`` / ``p999_ci_ms`` are 95 % distribution-free confidence
    intervals of p99 / p99.9 (a side is None when there are too few requests to
    bound it).  ``latencies_ms`` keeps the sorted ok latencies so that any other
    percentile (e.g. an SLO at p97.5) can be computed exactly; it is not part of
    ``repr``/equality/``to_dict`` and may be empty for a summary rebuilt from storage.
    """

    n_ok: int
    n_failed: int
    duration_s: float
    throughput_rps: float
    late_send_pct: float
    latency_ms: dict[str, float | None]
    p99_ci_ms: tuple[float | None, float | None]
    p999_ci_ms: tuple[float | None, float | None] = (None, None)
    n_late: int = 0
    late_threshold_ms: float = 1.0
    open_loop: bool = True
    latencies_ms: np.ndarray = field(default_factory=_no_latencies, repr=False, compare=False)

    @property
    def n_total(self) -> int:
        """All requests of the point, ok or not."""
        return self.n_ok + self.n_failed

    @property
    def failed_pct(self) -> float:
        """Share of requests that failed, in percent (0.0 when there were none)."""
        return 100.0 * self.n_failed / self.n_total if self.n_total else 0.0

    def percentile_ms(self, p: float) -> float | None:
        """Exact nearest-rank ``p``-th percentile (in percent) of the ok latencies in ms.

        Uses ``latency_ms`` for the standard :data:`PERCENTILES`, otherwise the stored
        sorted latencies.  None when no request was ok.  Raises ValueError for a
        non-standard percentile when the latencies were not kept.
        """
        if self.n_ok == 0:
            return None
        if float(p) in PERCENTILES:
            return self.latency_ms[percentile_key(p)]
        if self.latencies_ms.size != self.n_ok:
            raise ValueError(
                f"percentile {p:g} is not one of {PERCENTILES} and this summary "
                "does not hold the individual latencies"
            )
        return exact_percentile(self.latencies_ms, p, assume_sorted=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the statistics (without the latency array)."""
        return {
            "n_ok": self.n_ok,
            "n_failed": self.n_failed,
            "n_late": self.n_late,
            "duration_s": self.duration_s,
            "throughput_rps": self.throughput_rps,
            "late_send_pct": self.late_send_pct,
            "failed_pct": self.failed_pct,
            "late_threshold_ms": self.late_threshold_ms,
            "open_loop": self.open_loop,
            "latency_ms": dict(self.latency_ms),
            "p99_ci_ms": list(self.p99_ci_ms),
            "p999_ci_ms": list(self.p999_ci_ms),
        }


def request_latencies_ms(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Of a point's request records: which were ok (status 200, answered) and every
    request's latency from its scheduled send, in ms (meaningful where ok)."""
    ok = (np.asarray(arrays["status"]) == 200) & (np.asarray(arrays["done_ns"]) >= 0)
    latency = (np.asarray(arrays["done_ns"], dtype=np.int64)
               - np.asarray(arrays["scheduled_ns"], dtype=np.int64)) / 1e6
    return ok, latency


def client_timing_ms(arrays: Mapping[str, np.ndarray]) -> dict[str, float | None]:
    """A point's mean client-side time per ok request: from its scheduled send to its bytes
    handed to the kernel's socket (`client_send_ms`: a late wake-up, a connection opened
    for it, the write itself), and from its answer's first byte to its last, read and
    framed (`client_receive_ms`; only where the transport stamps a first byte). Both are
    inside the measured latency."""
    ok, _ = request_latencies_ms(arrays)
    if not ok.any():
        return {"client_send_ms": None, "client_receive_ms": None}
    sent = np.asarray(arrays["sent_ns"], dtype=np.int64)[ok]
    send = sent - np.asarray(arrays["scheduled_ns"], dtype=np.int64)[ok]
    first = np.asarray(arrays["first_byte_ns"], dtype=np.int64)[ok]
    stamped = first >= 0
    receive = np.asarray(arrays["done_ns"], dtype=np.int64)[ok][stamped] - first[stamped]
    return {"client_send_ms": float(send.mean()) / 1e6,
            "client_receive_ms": float(receive.mean()) / 1e6 if receive.size else None}


def summarize_point(
    scheduled_ns: np.ndarray,
    sent_ns: np.ndarray,
    done_ns: np.ndarray,
    status: np.ndarray,
    *,
    started_ns: int,
    ended_ns: int,
    open_loop: bool,
    late_threshold_ms: float = 1.0,
) -> PointSummary:
    """Summarize the requests of one point.

    A request is ok when ``status == 200`` and ``done_ns >= 0``; every other request
    counts as failed.  Throughput is ``n_ok`` over the measured window
    ``(ended_ns - started_ns)``.  A send is late when ``sent_ns - scheduled_ns``
    exceeds ``late_threshold_ms`` (a request never sent, ``sent_ns < 0``, is late
    too); the late share is reported for open-loop arrivals only, because in a
    closed loop the scheduled time *is* the time the client became free, so
    lateness is meaningless there (reported as 0.0).
    """
    sched = np.asarray(scheduled_ns, dtype=np.int64).ravel()
    sent = np.asarray(sent_ns, dtype=np.int64).ravel()
    done = np.asarray(done_ns, dtype=np.int64).ravel()
    stat = np.asarray(status, dtype=np.int64).ravel()
    n = sched.size
    if not (sent.size == done.size == stat.size == n):
        raise ValueError(
            f"arrays differ in length: scheduled {n}, sent {sent.size}, "
            f"done {done.size}, status {stat.size}"
        )
    if ended_ns < started_ns:
        raise ValueError(f"ended_ns {ended_ns} is before started_ns {started_ns}")

    ok = (stat == 200) & (done >= 0)
    n_ok = int(ok.sum())
    # Integer ns difference first, then float: exact below 2**53 ns (~104 days).
    lat_ms = np.sort((done[ok] - sched[ok]).astype(np.float64) / 1e6)

    duration_s = (int(ended_ns) - int(started_ns)) / 1e9
    throughput = n_ok / duration_s if duration_s > 0 else 0.0

    if open_loop and n:
        late = (sent < 0) | ((sent - sched) > late_threshold_ms * 1e6)
        n_late = int(late.sum())
        late_pct = 100.0 * n_late / n
    else:
        n_late, late_pct = 0, 0.0

    # The summary is frozen; keep its array from being changed behind its back.
    lat_ms.setflags(write=False)
    return PointSummary(
        n_ok=n_ok,
        n_failed=n - n_ok,
        duration_s=duration_s,
        throughput_rps=throughput,
        late_send_pct=late_pct,
        latency_ms=exact_percentiles(lat_ms),
        p99_ci_ms=quantile_ci(lat_ms, 0.99),
        p999_ci_ms=quantile_ci(lat_ms, 0.999),
        n_late=n_late,
        late_threshold_ms=float(late_threshold_ms),
        open_loop=bool(open_loop),
        latencies_ms=lat_ms,
    )
