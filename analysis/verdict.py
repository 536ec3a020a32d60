"""VALID / INVALID verdicts for measurement points and whole runs.

A point is INVALID when its numbers cannot be trusted: it was cut short, ran too
briefly, has too few ok requests, the open-loop load generator fell behind its
schedule, or too many requests failed.  Whether the point meets the latency SLO
is a separate question (a VALID point may well miss the SLO).  Every reason is a
full sentence naming the measured number and the threshold.
"""

from __future__ import annotations

import numpy as np

from analysis.percentiles import PERCENTILES, exact_percentile
from analysis.summary import PointSummary

VALID = "VALID"
INVALID = "INVALID"


def _pair(value: float, threshold: float, digits: int = 1) -> tuple[str, str]:
    """Format ``value`` and ``threshold`` with enough decimals to tell them apart.

    With a fixed one decimal, 1.04 % against a 1 % limit would read "1.0 % > 1 %",
    which looks like a bug in the rule; add decimals until the two differ.
    """
    d = digits
    while d < 6 and value != threshold and round(value, d) == round(threshold, d):
        d += 1
    return f"{value:.{d}f}", f"{threshold:g}"


def _seconds(x: float) -> str:
    """A threshold in seconds as configured: 10 -> "10.0", 0.25 -> "0.25"."""
    s = f"{x:.1f}"
    return s if float(s) == x else f"{x:g}"


def judge_point(
    summary: PointSummary,
    *,
    complete: bool,
    stop_reason: str,
    min_duration_s: float,
    min_requests: int,
    slo_percentile: float,
    slo_latency_ms: float,
    open_loop: bool,
    max_late_pct: float = 1.0,
    max_failed_pct: float = 1.0,
    latencies_ms: np.ndarray | None = None,
) -> tuple[str, list[str], bool | None]:
    """Judge one point: ``(verdict, reasons, meets_slo)``.

    ``verdict`` is "VALID" or "INVALID".  For an INVALID point ``reasons`` lists the
    rules it broke; for a VALID one, the checks it passed.  ``min_requests`` counts
    ok requests (percentiles are computed over those).  ``meets_slo`` is whether
    the exact ``slo_percentile``-th latency percentile (in percent, e.g. 99.0) is
    ``<= slo_latency_ms``; None when no request was ok.  Percentiles other than
    :data:`analysis.percentiles.PERCENTILES` are computed from ``latencies_ms``
    (the ok latencies in ms, any order) when given, else from the latencies the
    summary keeps (see :meth:`PointSummary.percentile_ms`).
    """
    failures: list[str] = []
    passed: list[str] = []

    if not complete:
        failures.append(f"point was cut short (stop_reason: {stop_reason})")

    dur, min_dur = summary.duration_s, float(min_duration_s)
    if dur < min_dur:
        a, _ = _pair(dur, min_dur)
        failures.append(
            f"ran {a} s < min_duration_s {_seconds(min_dur)} (stopped by {stop_reason})"
        )
    else:
        a, _ = _pair(dur, min_dur)
        passed.append(f"duration {a} s >= {_seconds(min_dur)} s")

    if summary.n_ok == 0:
        failures.append(f"no request completed successfully ({summary.n_failed} failed)")
    elif summary.n_ok < min_requests:
        failures.append(f"only {summary.n_ok} ok requests < min_requests {min_requests}")
    else:
        passed.append(f"{summary.n_ok} requests >= {min_requests}")

    if open_loop:
        late = summary.late_send_pct
        thr_ms = f"{summary.late_threshold_ms:g}"
        if late > max_late_pct:
            a, b = _pair(late, max_late_pct)
            failures.append(
                f"{a} % of requests were sent more than {thr_ms} ms late (> {b} %): "
                "the load generator fell behind"
            )
        else:
            a, b = _pair(late, max_late_pct)
            passed.append(f"late sends {a} % <= {b} %")
    else:
        # Closed loop: the scheduled time is when the client became free.
        passed.append("late sends not applicable (closed loop)")

    failed = summary.failed_pct
    a, b = _pair(failed, max_failed_pct)
    if failed > max_failed_pct:
        failures.append(f"{a} % of requests failed (> {b} %)")
    else:
        passed.append(f"failed {a} % <= {b} %")

    if summary.n_ok == 0:
        observed = None
    elif latencies_ms is not None and float(slo_percentile) not in PERCENTILES:
        observed = exact_percentile(latencies_ms, slo_percentile)
    else:
        observed = summary.percentile_ms(slo_percentile)
    meets_slo = None if observed is None else bool(observed <= slo_latency_ms)

    if failures:
        return INVALID, failures, meets_slo
    return VALID, passed, meets_slo


def judge_run(points: list[tuple[str, str]], failed_platforms: list[str]) -> tuple[str, list[str]]:
    """Judge a whole run from its points' ``(label, verdict)`` and the failed platforms.

    VALID only if there is at least one point, every point is VALID and no platform
    failed; otherwise the reasons name each offending point and platform.
    """
    reasons: list[str] = []
    if not points:
        reasons.append("no points were measured")
    for label, verdict in points:
        if verdict != VALID:
            reasons.append(f"point {label} is {verdict or 'not judged'}")
    for platform in failed_platforms:
        reasons.append(f"platform {platform} failed")
    if reasons:
        return INVALID, reasons
    what = "the only point is" if len(points) == 1 else f"all {len(points)} points are"
    return VALID, [f"{what} VALID and no platform failed"]
