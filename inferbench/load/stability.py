"""Do the last measurement windows agree? The stability half of the stop rule.

A point counts only when its last `n` windows (each `window_s` long, ending now) agree on
throughput and p99 within `tolerance_pct` of their mean. Windows that differ by more than
that but by no more than their own sampling noise also agree: at 50 req/s a 3 s window
holds ~150 requests, whose count varies by ~8 % and whose p99 is the second largest value,
so demanding 10 % there would reject every honest low-rate run. Noise is judged with a
3-sigma Poisson band for counts and overlapping 95 % order-statistic intervals for p99 (an
upper side that cannot be bounded with so few samples is taken as the window's maximum,
the most a p99 of those samples could be).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.percentiles import exact_percentile, quantile_ci


@dataclass(frozen=True)
class Window:
    start_ns: int
    end_ns: int
    count: int
    throughput_rps: float
    p99_ms: float | None
    p99_ci_ms: tuple[float | None, float | None]


def windows(done_ns: np.ndarray, latency_ms: np.ndarray, end_ns: int, window_s: float,
            n: int) -> list[Window]:
    """The last `n` windows of `window_s` ending at `end_ns`, oldest first, over the ok
    requests that completed in each (`done_ns`, `latency_ms` aligned)."""
    done_ns = np.asarray(done_ns, dtype=np.int64)
    latency_ms = np.asarray(latency_ms, dtype=np.float64)
    width_ns = int(window_s * 1e9)
    out = []
    for k in range(n, 0, -1):
        lo, hi = end_ns - k * width_ns, end_ns - (k - 1) * width_ns
        mask = (done_ns >= lo) & (done_ns < hi)
        lat = latency_ms[mask]
        ci: tuple[float | None, float | None] = (None, None)
        if lat.size:
            low, high = quantile_ci(lat, 0.99)
            ci = (low, high if high is not None else float(lat.max()))
        out.append(Window(lo, hi, int(mask.sum()), mask.sum() / window_s,
                          exact_percentile(lat, 99) if lat.size else None, ci))
    return out


def _spread_pct(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return 100.0 * (max(values) - min(values)) / mean if mean > 0 else 0.0


def judge(ws: list[Window], tolerance_pct: float) -> tuple[bool, list[str]]:
    """(stable, reasons): a reason per metric that disagrees beyond tolerance and noise."""
    reasons: list[str] = []
    counts = [w.count for w in ws]
    if min(counts) == 0:
        return False, [f"a measurement window had no completed request (counts {counts})"]
    spread = _spread_pct([float(c) for c in counts])
    lo, hi = min(counts), max(counts)
    if spread > tolerance_pct and hi - lo > 3 * math.sqrt(hi + lo):
        reasons.append(f"throughput of the last {len(ws)} windows varies by {spread:.1f} % "
                       f"(> {tolerance_pct:g} %, beyond Poisson noise): "
                       + ", ".join(f"{w.throughput_rps:.1f}" for w in ws) + " req/s")
    p99s = [w.p99_ms for w in ws]
    if all(p is not None for p in p99s):
        spread = _spread_pct(p99s)  # type: ignore[arg-type]
        lows = [w.p99_ci_ms[0] for w in ws]
        highs = [w.p99_ci_ms[1] for w in ws]
        # Intervals overlap when the highest lower bound is below the lowest upper bound.
        top_low = max((x for x in lows if x is not None), default=-math.inf)
        bottom_high = min((x for x in highs if x is not None), default=math.inf)
        if spread > tolerance_pct and top_low > bottom_high:
            reasons.append(f"p99 of the last {len(ws)} windows varies by {spread:.1f} % "
                           f"(> {tolerance_pct:g} %, their 95 % intervals do not overlap): "
                           + ", ".join(f"{p:.2f}" for p in p99s) + " ms")  # type: ignore[str-format]
    return not reasons, reasons
