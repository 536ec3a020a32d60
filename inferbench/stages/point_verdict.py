"""One measured point's statistics and verdict, judged with the spec's rules: the analysis
judges every stored point with it, and the load stage each rung as it is measured (so a
ladder moves on what the analysis will later accept)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from analysis.summary import PointSummary
    from inferbench.spec import BenchmarkSpec


@dataclass(frozen=True)
class PointVerdict:
    summary: PointSummary
    latencies_ms: np.ndarray      # of the ok requests, from their scheduled send
    verdict: str                  # VALID | INVALID
    reasons: list[str]
    meets_slo: bool | None


def judge_point_records(spec: BenchmarkSpec, arrays: Mapping[str, np.ndarray], *,
                        started_ns: int, ended_ns: int, complete: bool, stop_reason: str,
                        open_loop: bool) -> PointVerdict:
    from analysis.summary import summarize_point
    from analysis.verdict import judge_point

    summary = summarize_point(arrays["scheduled_ns"], arrays["sent_ns"], arrays["done_ns"],
                              arrays["status"], started_ns=started_ns, ended_ns=ended_ns,
                              open_loop=open_loop, late_threshold_ms=spec.late_send_threshold_ms)
    ok = (arrays["status"] == 200) & (arrays["done_ns"] >= 0)
    latencies_ms = (arrays["done_ns"][ok] - arrays["scheduled_ns"][ok]) / 1e6
    verdict, reasons, meets_slo = judge_point(
        summary, latencies_ms=latencies_ms, complete=complete, stop_reason=stop_reason,
        min_duration_s=spec.min_duration_s, min_requests=spec.min_requests,
        slo_percentile=spec.slo.percentile, slo_latency_ms=spec.slo.latency_ms,
        open_loop=open_loop, max_late_pct=spec.max_late_send_pct)
    return PointVerdict(summary, latencies_ms, verdict, reasons, meets_slo)
