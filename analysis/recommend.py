"""The recommender: which configurations meet the SLO at the lowest cost, and why.

Pure function over point records (see :mod:`analysis.points`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from analysis.points import config_key, items_per_s, labeller, latency_at, offered_load


@dataclass(frozen=True)
class Recommendation:
    """One recommended configuration and the evidence behind it."""

    rank: int
    label: str
    platform: str
    format: str | None
    hardware: str | None
    batch_size: int
    offered_load: float | None
    run_id: str
    latency_ms: float  # at the SLO percentile
    p99_ci_ms: tuple[float | None, float | None]
    verdict: str
    throughput_rps: float
    items_per_s: float
    usd_per_hour: float | None
    cost_per_million_usd: float | None
    ranked_by: str  # "cost per million requests" or "items/s (no price known)"
    evidence: list[str] = field(default_factory=list)


def _sort_key(row: Mapping[str, Any]) -> tuple:
    # Priced points first, cheapest per request; then unpriced ones by items/s, highest
    # first. Remaining ties: lower tail latency, then run id (deterministic).
    cost = row.get("cost_per_million_usd")
    if cost is not None:
        return (0, float(cost), 0.0, row["_lat"], str(row.get("run_id")))
    return (1, 0.0, -items_per_s(row), row["_lat"], str(row.get("run_id")))


def _eligible(rows: Iterable[Mapping[str, Any]], slo_percentile: float, slo_ms: float,
              budget_usd_per_hour: float | None) -> Iterator[tuple[Mapping[str, Any], float]]:
    """The rows that are VALID, within the SLO and within the budget (when given), each with
    its latency at the SLO percentile."""
    for row in rows:
        if row.get("verdict") != "VALID":
            continue
        lat = latency_at(row, slo_percentile)
        if lat is None or lat > slo_ms:
            continue
        price = row.get("usd_per_hour")
        if budget_usd_per_hour is not None and (price is None or price > budget_usd_per_hour):
            continue
        yield row, lat


def best_point(rows: Iterable[Mapping[str, Any]], *, slo_percentile: float, slo_ms: float,
               budget_usd_per_hour: float | None = None) -> Mapping[str, Any] | None:
    """The point :func:`recommend` ranks first, as the caller's own row (so columns the
    recommender does not read, such as a run's server configuration, stay with it); None
    when no point is VALID and within the SLO (and the budget)."""
    best = min(_eligible(rows, slo_percentile, slo_ms, budget_usd_per_hour),
               key=lambda pair: _sort_key({**pair[0], "_lat": pair[1]}), default=None)
    return None if best is None else best[0]


def recommend(rows: Iterable[Mapping[str, Any]], *, slo_percentile: float, slo_ms: float,
              budget_usd_per_hour: float | None = None, top: int = 3) -> list[Recommendation]:
    """The ``top`` configurations (platform, format, hardware, batch size, offered load) that
    are VALID and within ``slo_ms`` at ``slo_percentile``, and within the budget if given.

    Ranked by cost per million requests (cheapest first); configurations with no known price
    come after every priced one, ranked by items/s. A point with no price is excluded when a
    budget is given (it cannot be shown to fit). One entry per configuration: its best point.
    """
    rows = list(rows)
    config_label = labeller(rows)
    candidates: dict[tuple, dict[str, Any]] = {}
    for row, lat in _eligible(rows, slo_percentile, slo_ms, budget_usd_per_hour):
        cand = {**row, "_lat": lat}
        key = config_key(row, with_load=True)
        if key not in candidates or _sort_key(cand) < _sort_key(candidates[key]):
            candidates[key] = cand
    ranked = sorted(candidates.values(), key=_sort_key)[:top]
    out = []
    for rank, r in enumerate(ranked, start=1):
        ci = tuple((r.get("latency_ms") or {}).get("p99_ci") or (None, None))
        cost = r.get("cost_per_million_usd")
        evidence = [
            f"p{slo_percentile:g} = {r['_lat']:.3f} ms <= SLO {slo_ms:g} ms"
            + (f" (p99 95% CI [{_f(ci[0])}, {_f(ci[1])}] ms)" if slo_percentile == 99 else ""),
            f"verdict {r['verdict']} (run {r.get('run_id')})",
            f"throughput {float(r['throughput_rps']):.1f} req/s = {items_per_s(r):.1f} items/s",
            (f"cost ${cost:.4f} per million requests at ${float(r['usd_per_hour']):.3f}/h"
             if cost is not None else "no price known for this hardware: ranked by items/s"),
        ]
        out.append(Recommendation(
            rank=rank, label=config_label(r, with_load=True), platform=r["platform"],
            format=r.get("format"), hardware=r.get("hardware"), batch_size=int(r["batch_size"]),
            offered_load=offered_load(r), run_id=str(r.get("run_id")), latency_ms=r["_lat"],
            p99_ci_ms=(ci[0], ci[1]), verdict=r["verdict"],
            throughput_rps=float(r["throughput_rps"]), items_per_s=items_per_s(r),
            usd_per_hour=r.get("usd_per_hour"), cost_per_million_usd=cost,
            ranked_by="cost per million requests" if cost is not None
            else "items/s (no price known)", evidence=evidence))
    return out


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
