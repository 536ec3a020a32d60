"""The report's "Predictability" section: SLO attainment, goodput and the far tail per
point, and the latency spread of each family at its lightest load (analysis/predictability.py
says what each figure is)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from analysis.predictability import (
    TAIL_PERCENTILES,
    latency_spread,
    point_predictability,
)
from inferbench.perfdb import queries
from inferbench.reporting import _fmt, _table


def _arrays(conn: Connection, row: dict) -> dict:
    return queries.request_arrays(conn, row["run_id"], row["platform"], row["point"],
                                  row.get("config_index") or 0)


def _tail_cell(tail: dict) -> str:
    if tail["ms"] is None:
        return f"not enough requests (needs {tail['requests_needed']:,})"
    lo, hi = tail["ci_ms"]
    return f"{_fmt(tail['ms'])} [{_fmt(lo)}, {_fmt(hi)}]"


def predictability_section(conn: Connection, records: Sequence[dict], families: Sequence,
                           family_label: Callable, config_label: Callable,
                           slo_ms: float) -> dict[str, Any]:
    points = []
    for r in records:
        duration_s = ((r.get("ended_ns") or 0) - (r.get("started_ns") or 0)) / 1e9
        p = point_predictability(_arrays(conn, r), slo_ms, duration_s)
        points.append([config_label(r, with_load=True), p["n_sent"],
                       p["slo_attainment_pct"], p["goodput_rps"],
                       *(_tail_cell(p[f"p{q:g}"]) for q in TAIL_PERCENTILES)])
    spreads = []
    for f in families:
        if not f.rungs:
            continue
        lightest = f.rungs[0]
        s = latency_spread(_arrays(conn, dict(lightest.row)))
        spreads.append([family_label(f), f.load_text(lightest.offered), s["n_ok"], s["cv"],
                        s["max_over_median"]])
    tails = " and ".join(f"p{q:g}" for q in TAIL_PERCENTILES)
    return {"id": "predictability", "title": "Predictability: SLO attainment, goodput, the "
            "far tail",
            "notes": [f"Within SLO: the share of every request sent (failures miss) answered "
                      f"within {slo_ms:g} ms; goodput: those per second of the point. "
                      f"{tails}: exact, with 95 % distribution-free bounds in brackets; a "
                      "point with fewer requests than a percentile needs for an upper bound "
                      "says how many it needs.",
                      "Spread at the lightest load: the latency's coefficient of variation and "
                      "max / median at each family's lowest rung, where little queues, so it "
                      "is the server's own variability (plus the client's path)."],
            "tables": [_table(["configuration", "requests sent", "within SLO (%)",
                               "goodput (req/s)",
                               *(f"p{q:g} (ms) [95 % bounds]" for q in TAIL_PERCENTILES)],
                              points),
                       _table(["family", "lightest load", "requests", "CV",
                               "max / median"], spreads)],
            "images": []}
