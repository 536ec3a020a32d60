"""The recommender: which configurations carry the most load within the SLO, at what cost,
and why.

Pure function over point records (see :mod:`analysis.points`). It ranks *families*
(platform x server configuration x batch size of one run) by their capacity at SLO with the
one rule of :func:`analysis.capacity.rank`, so its first pick is the summary's and the
report's answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from analysis.capacity import (
    FamilyCapacity,
    capacities,
    capacity_text,
    family_labeller,
    offered_text,
    rank,
    usd_text,
)
from analysis.points import config_key


@dataclass(frozen=True)
class Recommendation:
    """One recommended configuration (a family at its capacity) and the evidence."""

    rank: int
    label: str
    platform: str
    format: str | None
    hardware: str | None
    batch_size: int
    server_config: str | None
    run_id: str
    offered_load: float | None      # of the capacity rung: req/s, or clients (closed loop)
    capacity_rps: float
    capacity_items_per_s: float
    search_cap_reached: bool
    bracket: dict[str, Any] | None  # the lowest failing load above the capacity, and why
    latency_ms: float               # at the SLO percentile, at capacity
    p99_ci_ms: tuple[float | None, float | None]
    verdict: str
    throughput_rps: float           # what the capacity rung achieved
    usd_per_hour: float | None
    cost_per_million_usd: float | None        # per million requests, at capacity
    cost_per_million_items_usd: float | None  # per million inferences, at capacity
    energy_j_per_request: float | None
    ranked_by: str
    evidence: list[str] = field(default_factory=list)


def _configuration(f: FamilyCapacity) -> tuple:
    """A family's configuration across runs: the same one measured twice is listed once."""
    assert f.capacity is not None
    return config_key(f.capacity.row)


def _ranked(rows: Iterable[Mapping[str, Any]], slo_percentile: float, slo_ms: float,
            budget_usd_per_hour: float | None):
    families = capacities(rows, slo_percentile=slo_percentile, slo_ms=slo_ms)
    seen: set[tuple] = set()
    out = []
    for r in rank(families, budget_usd_per_hour=budget_usd_per_hour):
        key = _configuration(r.family)
        if key not in seen:  # one entry per configuration: its best family
            seen.add(key)
            out.append(r)
    return families, out


def best_point(rows: Iterable[Mapping[str, Any]], *, slo_percentile: float, slo_ms: float,
               budget_usd_per_hour: float | None = None) -> Mapping[str, Any] | None:
    """The capacity rung of the family :func:`recommend` ranks first, as the caller's own
    row (so columns the recommender does not read stay with it); None when no family has a
    rung within the SLO (and the budget)."""
    _, ranked = _ranked(rows, slo_percentile, slo_ms, budget_usd_per_hour)
    if not ranked or ranked[0].family.capacity is None:
        return None
    return ranked[0].family.capacity.row


def recommend(rows: Iterable[Mapping[str, Any]], *, slo_percentile: float, slo_ms: float,
              budget_usd_per_hour: float | None = None, top: int = 3) -> list[Recommendation]:
    """The ``top`` families with a capacity at ``slo_ms`` at ``slo_percentile`` (and within
    the budget if given: a family with no known price is then excluded, it cannot be shown
    to fit), ranked by :func:`analysis.capacity.rank`: capacity in items/s, or cost per
    million inferences at capacity where prices differ; ties by tail latency."""
    rows = list(rows)
    families, ranked = _ranked(rows, slo_percentile, slo_ms, budget_usd_per_hour)
    label = family_labeller(families)
    out = []
    for position, r in enumerate(ranked[:top], start=1):
        f, cap = r.family, r.family.capacity
        assert cap is not None and cap.latency_ms is not None
        row = cap.row
        ci = tuple((row.get("latency_ms") or {}).get("p99_ci") or (None, None))
        bracket = (f"the highest load tried ({offered_text(cap.offered, f.open_loop)}) still "
                   "holds: search cap reached" if f.bracket is None else
                   f"{offered_text(f.bracket.offered, f.open_loop)} failed: {f.bracket.reason}")
        evidence = [
            f"capacity {capacity_text(f)}; {bracket}",
            f"p{slo_percentile:g} = {cap.latency_ms:.3f} ms <= SLO {slo_ms:g} ms at capacity"
            + (f" (p99 95% CI [{_f(ci[0])}, {_f(ci[1])}] ms)" if slo_percentile == 99 else ""),
            f"verdict {cap.verdict} (run {f.run_id}, point {cap.point}); achieved "
            f"{cap.achieved_rps:.1f} req/s",
            (f"cost {usd_text(f.cost_per_million_usd)} per million requests, "
             f"{usd_text(f.cost_per_million_items_usd or 0.0)} per million inferences at "
             f"${f.usd_per_hour:.3f}/h" if f.cost_per_million_usd is not None
             and f.usd_per_hour is not None
             else "no price known for this hardware"),
        ]
        out.append(Recommendation(
            rank=position, label=label(f), platform=f.platform, format=row.get("format"),
            hardware=f.hardware, batch_size=f.batch_size, server_config=f.server_config,
            run_id=str(f.run_id), offered_load=cap.offered,
            capacity_rps=float(f.capacity_rps or 0.0),
            capacity_items_per_s=float(f.capacity_items_per_s or 0.0),
            search_cap_reached=f.search_cap_reached,
            bracket=None if f.bracket is None else f.bracket.to_dict(),
            latency_ms=cap.latency_ms, p99_ci_ms=(ci[0], ci[1]), verdict=str(cap.verdict),
            throughput_rps=cap.achieved_rps, usd_per_hour=f.usd_per_hour,
            cost_per_million_usd=f.cost_per_million_usd,
            cost_per_million_items_usd=f.cost_per_million_items_usd,
            energy_j_per_request=f.energy_j_per_request, ranked_by=r.ranked_by,
            evidence=evidence))
    return out


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
