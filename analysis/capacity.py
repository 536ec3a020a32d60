"""Capacity under an SLO: which offered loads a configuration carries, and the highest one.

A *family* is one platform x server configuration x batch size of a run; its points (rungs)
differ only in offered load. A rung *holds* when its SLO percentile is within the SLO, it
achieved at least `MIN_ACHIEVED_RATIO` of the offered rate (open loop) and no request
failed. The load stage's capacity search and the analysis judge rungs with the same
function, so the search stops where the analysis later draws the line.
"""

from __future__ import annotations

from dataclasses import dataclass

# A rung whose server completed less than this share of the offered rate is overloaded: its
# queue grows without bound however short the measured latency looks.
MIN_ACHIEVED_RATIO = 0.95


@dataclass(frozen=True)
class RungJudgement:
    """Whether one rung holds under the SLO, and the first reason it does not."""

    offered: float                 # req/s (open loop) or clients (closed loop)
    achieved_rps: float
    latency_at_slo_ms: float | None
    n_failed: int
    holds: bool
    reason: str | None             # None when it holds

    @property
    def achieved_ratio(self) -> float | None:
        return self.achieved_rps / self.offered if self.offered else None


def judge_rung(*, offered: float, achieved_rps: float, latency_at_slo_ms: float | None,
               n_failed: int, slo_percentile: float, slo_ms: float,
               open_loop: bool = True) -> RungJudgement:
    """Judge one rung: errors first, then whether the server kept up (open loop only: a
    closed loop offers only what it completes), then the SLO percentile."""
    def verdict(reason: str | None) -> RungJudgement:
        return RungJudgement(offered, achieved_rps, latency_at_slo_ms, n_failed,
                             reason is None, reason)

    if n_failed:
        return verdict(f"{n_failed} failed requests")
    if open_loop and achieved_rps < MIN_ACHIEVED_RATIO * offered:
        return verdict(f"achieved {achieved_rps:.1f} of {offered:g} req/s offered "
                       f"(< {MIN_ACHIEVED_RATIO:.0%})")
    if latency_at_slo_ms is None:
        return verdict(f"p{slo_percentile:g} unknown (no successful requests)")
    if latency_at_slo_ms > slo_ms:
        return verdict(f"p{slo_percentile:g} {latency_at_slo_ms:.1f} ms > {slo_ms:g} ms")
    return verdict(None)
