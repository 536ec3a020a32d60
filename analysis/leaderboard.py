"""Leaderboard: rows of the ``leaderboard`` (points) or ``capacity_leaderboard`` (families)
SQL views, sorted by any column, as text or HTML. The families' default order is the
recommender's rule (:func:`analysis.capacity.rank_key`)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from analysis.capacity import prices_differ, rank_key
from inferbench.errors import InferBenchError

# Shown by default, in this order; every other column of the view stays sortable.
DEFAULT_COLUMNS = ("platform", "family", "depth", "hardware", "batch_size", "target_rate_rps",
                   "throughput_rps", "items_per_s", "p50_ms", "p99_ms", "verdict",
                   "cost_per_million_usd", "run_id")
# The families' view (`capacity_leaderboard`), shown by default in this order.
FAMILY_COLUMNS = ("platform", "server_config", "batch_size", "family", "depth", "hardware",
                  "capacity_rps", "capacity_items_per_s", "latency_at_slo_ms", "slo_ms",
                  "search_cap_reached", "cost_per_million_items_usd", "server_cpu_pct",
                  "server_rss_mb", "gpu_util_pct", "bracket_reason", "run_verdict", "run_id")
# Lower is better for these; everything else sorts descending (higher throughput first).
ASCENDING = {"p50_ms", "p99_ms", "p999_ms", "cost_per_million_usd", "usd_per_hour",
             "energy_j_per_request", "co2_g_per_request", "late_send_pct", "n_failed",
             "latency_at_slo_ms", "cost_per_million_items_usd", "server_cpu_pct",
             "server_rss_mb"}


def sort_rows(rows: Sequence[Mapping[str, Any]], column: str, known: Sequence[str],
              descending: bool | None = None) -> list[Mapping[str, Any]]:
    """Rows sorted by ``column`` (NULLs last). Lower-is-better metrics sort ascending unless
    ``descending`` says otherwise. An unknown column raises, listing the known ones."""
    if column not in known:
        raise InferBenchError(f"unknown leaderboard column {column!r}; known columns: "
                              f"{', '.join(known)}; fix: pass one of them to --sort")
    desc = column not in ASCENDING if descending is None else descending
    present = [r for r in rows if r.get(column) is not None]
    missing = [r for r in rows if r.get(column) is None]
    return sorted(present, key=lambda r: r[column], reverse=desc) + missing


def rank_families(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows of the ``capacity_leaderboard`` view in the recommender's order
    (:func:`analysis.capacity.rank_key`): families with a capacity at SLO first, by items/s,
    or by cost per million inferences where their prices differ; ties by tail latency."""
    with_capacity = [r for r in rows if r.get("capacity_rps") is not None]
    by_cost = prices_differ(r.get("usd_per_hour") for r in with_capacity)

    def key(r: Mapping[str, Any]) -> tuple:
        return rank_key(items_per_s=r.get("capacity_items_per_s") or 0.0,
                        cost_per_million_items_usd=r.get("cost_per_million_items_usd"),
                        latency_ms=r.get("latency_at_slo_ms"), by_cost=by_cost,
                        tiebreak=(str(r.get("run_id")), str(r.get("platform")),
                                  r.get("config_index") or 0, r.get("batch_size") or 0))

    return sorted(with_capacity, key=key) + [r for r in rows if r.get("capacity_rps") is None]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 0.01 else f"{value:.2f}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]],
                 columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
    """A fixed-width text table."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def format_html(rows: Sequence[Mapping[str, Any]],
                columns: Sequence[str] = DEFAULT_COLUMNS, title: str = "Leaderboard") -> str:
    """A standalone HTML page with the table (escaped)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>"
                                    for c in columns) + "</tr>" for r in rows)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>table{{border-collapse:collapse}}td,th"
            f"{{border:1px solid #ccc;padding:.2em .5em}}</style></head><body><h1>"
            f"{html.escape(title)}</h1><table><thead><tr>{head}</tr></thead><tbody>{body}"
            "</tbody></table></body></html>")
