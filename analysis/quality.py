"""Data-quality expectations on a run's measurements, checked before they are published.

The same expectations a Great Expectations suite would hold, as pure functions (Great
Expectations 1.x needs numpy 2 and pandas 3 here, which the pinned numpy 1.26.4 of
nvidia-pytriton rules out; see the README's analysis section). A run that fails is kept
and marked (``runs.quality_ok = false`` + the reasons), never dropped.

Each expectation returns a list of failure messages (empty = passed) naming the point,
the value and the bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

PERCENTILE_ORDER = ("p50", "p90", "p95", "p99", "p99.9", "max")
# Achieved throughput may exceed the offered rate by this share: a Poisson schedule's
# realised rate over a short window fluctuates around its mean.
DEFAULT_RATE_TOLERANCE = 0.10


def expect_non_negative_latencies(label: str, latencies_ms: np.ndarray) -> list[str]:
    lat = np.asarray(latencies_ms, dtype=np.float64)
    bad = int(np.sum(lat < 0))
    return [f"{label}: {bad} negative latencies (min {float(lat.min()):.3f} ms); expected "
            "every latency >= 0"] if bad else []


def expect_monotone_percentiles(label: str, latency_ms: Mapping[str, Any]) -> list[str]:
    vals = [(k, latency_ms.get(k)) for k in PERCENTILE_ORDER if latency_ms.get(k) is not None]
    return [f"{label}: {a} = {va!r} ms > {b} = {vb!r} ms; expected percentiles non-decreasing"
            for (a, va), (b, vb) in zip(vals, vals[1:], strict=False) if va > vb]


def expect_achieved_le_offered(label: str, throughput_rps: float, target_rate_rps: float | None,
                               tolerance: float = DEFAULT_RATE_TOLERANCE) -> list[str]:
    if target_rate_rps is None:  # closed loop: nothing offered beyond what is answered
        return []
    limit = target_rate_rps * (1 + tolerance)
    return [f"{label}: achieved {throughput_rps:.2f} rps > offered {target_rate_rps:g} rps "
            f"+ {tolerance:.0%}; expected achieved <= {limit:.2f}"] \
        if throughput_rps > limit else []


def expect_counts_consistent(label: str, n_ok: int, n_failed: int, n_requests: int) -> list[str]:
    out = []
    if n_ok < 0 or n_failed < 0:
        out.append(f"{label}: negative count n_ok={n_ok!r} n_failed={n_failed!r}")
    if n_ok + n_failed != n_requests:
        out.append(f"{label}: n_ok {n_ok} + n_failed {n_failed} != {n_requests} recorded "
                   "requests; expected them equal")
    return out


def validate_run(points: Iterable[Mapping[str, Any]],
                 tolerance: float = DEFAULT_RATE_TOLERANCE) -> tuple[bool, list[str]]:
    """All expectations over a run's points. Each point mapping has: label, latencies_ms
    (array), latency_ms (percentile dict), throughput_rps, target_rate_rps, n_ok, n_failed,
    n_requests. Returns (passed, reasons)."""
    reasons: list[str] = []
    for p in points:
        label = p["label"]
        reasons += expect_non_negative_latencies(label, p["latencies_ms"])
        reasons += expect_monotone_percentiles(label, p["latency_ms"])
        reasons += expect_achieved_le_offered(label, p["throughput_rps"],
                                              p.get("target_rate_rps"), tolerance)
        reasons += expect_counts_consistent(label, p["n_ok"], p["n_failed"], p["n_requests"])
    return not reasons, reasons
