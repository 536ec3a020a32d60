"""Predictability of a served model (tight SLOs need predictable latency): per point, the
share of requests within the SLO, the goodput, the far tail with distribution-free bounds;
per configuration, how much its latency varies when nothing queues.

- SLO attainment counts every request sent: a failed one (an error, a timeout) misses.
- Goodput: requests answered within the SLO per second of the point's measurement.
- p99.9 and p99.99 are exact nearest-rank percentiles with 95 % distribution-free bounds
  (analysis.percentiles.quantile_ci). A percentile needs enough requests for its upper bound
  to exist (with fewer, the largest value measured may still be below the true
  percentile): the smallest such count is `requests_needed`, shown instead of a number
  where the point has fewer.
- The spread (CV, max / median) is that of the latency at the configuration's lightest load
  measured: with (almost) nothing queued, latency is the service time plus the client's
  path, so its spread is the server's variability, not queueing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from analysis.percentiles import exact_percentile, quantile_ci
from analysis.summary import request_latencies_ms

TAIL_PERCENTILES = (99.9, 99.99)
CONFIDENCE = 0.95


def requests_needed(p: float, confidence: float = CONFIDENCE) -> int:
    """The fewest requests for which the p-th percentile (in percent) has a distribution-free
    upper bound at `confidence`: q^n <= (1 - confidence) / 2, with q = p / 100 (the chance
    that n requests all fall below the percentile must be small)."""
    q = p / 100.0
    return math.ceil(math.log((1.0 - confidence) / 2.0) / math.log(q))


def ok_latencies_ms(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Sorted latencies (from the scheduled send) of the requests answered with 200."""
    ok, latency = request_latencies_ms(arrays)
    return np.sort(latency[ok])


def point_predictability(arrays: Mapping[str, np.ndarray], slo_ms: float,
                         duration_s: float) -> dict:
    """SLO attainment, goodput and the far tail of one point's requests."""
    latency = ok_latencies_ms(arrays)
    sent = len(arrays["status"])
    within = int(np.searchsorted(latency, slo_ms, side="right"))
    out: dict = {"n_sent": sent, "n_ok": int(latency.size),
                 "slo_attainment_pct": 100.0 * within / sent if sent else None,
                 "goodput_rps": within / duration_s if duration_s > 0 else None}
    for p in TAIL_PERCENTILES:
        needed = requests_needed(p)
        key = f"p{p:g}"
        if latency.size < needed:
            out[key] = {"ms": None, "ci_ms": (None, None), "requests_needed": needed}
            continue
        lo, hi = quantile_ci(latency, p / 100.0, CONFIDENCE)
        out[key] = {"ms": exact_percentile(latency, p, assume_sorted=True), "ci_ms": (lo, hi),
                    "requests_needed": needed}
    return out


def latency_spread(arrays: Mapping[str, np.ndarray]) -> dict:
    """CV and max / median of one point's ok latencies (None with fewer than 2)."""
    latency = ok_latencies_ms(arrays)
    if latency.size < 2:
        return {"n_ok": int(latency.size), "cv": None, "max_over_median": None}
    median = exact_percentile(latency, 50, assume_sorted=True)
    return {"n_ok": int(latency.size), "cv": float(latency.std(ddof=1) / latency.mean()),
            "max_over_median": float(latency[-1] / median) if median else None}
