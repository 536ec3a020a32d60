"""Heat maps, data-quality expectations and the leaderboard on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.heatmap import heat_map
from analysis.leaderboard import format_html, format_table, rank_families, sort_rows
from analysis.quality import validate_run
from inferbench.errors import InferBenchError


def row(depth, batch, value, width=8):
    return {"batch_size": batch, "hyperparams": {"depth": depth, "width": width}, "v": value}


def test_heat_map_pivots_averages_and_fixes_the_others():
    rows = [row(1, 1, 10.0), row(1, 4, 20.0), row(2, 1, 30.0), row(2, 1, 50.0),
            row(3, 4, 999.0, width=16)]  # width 16 is the minority: fixed away
    hm = heat_map(rows, "depth", "batch_size", lambda r: r["v"], metric_name="v",
                  vary_free=("width",))
    assert hm.fixed == {"width": 8}
    assert hm.x_values == [1, 2] and hm.y_values == [1, 4]
    assert hm.values[0].tolist() == [10.0, 40.0]
    assert hm.values[1, 0] == 20.0 and math.isnan(hm.values[1, 1])
    explicit = heat_map(rows, "depth", "batch_size", lambda r: r["v"], metric_name="v",
                        fixed={"width": 16})
    assert explicit.values.tolist() == [[999.0]]


def quality_point(**over):
    p = {"label": "p", "latencies_ms": np.array([1.0, 2.0]),
         "latency_ms": {"p50": 1.0, "p99": 2.0, "max": 2.0}, "throughput_rps": 10.0,
         "target_rate_rps": 10.0, "n_ok": 2, "n_failed": 0, "n_requests": 2}
    return {**p, **over}


def test_quality_passes_clean_data_and_names_each_failure():
    assert validate_run([quality_point()]) == (True, [])
    ok, reasons = validate_run([quality_point(
        latencies_ms=np.array([-1.0, 2.0]), latency_ms={"p50": 3.0, "p99": 2.0},
        throughput_rps=11.5, n_requests=3)])
    assert not ok
    assert reasons == [
        "p: 1 negative latencies (min -1.000 ms); expected every latency >= 0",
        "p: p50 = 3.0 ms > p99 = 2.0 ms; expected percentiles non-decreasing",
        "p: achieved 11.50 rps > offered 10 rps + 10%; expected achieved <= 11.00",
        "p: n_ok 2 + n_failed 0 != 3 recorded requests; expected them equal"]
    # Closed loop offers no rate: nothing to compare.
    assert validate_run([quality_point(target_rate_rps=None, throughput_rps=99.0)])[0]


def test_leaderboard_sorts_any_column_nulls_last():
    rows = [{"p99_ms": 5.0, "items_per_s": 10.0}, {"p99_ms": None, "items_per_s": 30.0},
            {"p99_ms": 2.0, "items_per_s": 20.0}]
    known = ["p99_ms", "items_per_s"]
    assert [r["p99_ms"] for r in sort_rows(rows, "p99_ms", known)] == [2.0, 5.0, None]
    assert [r["items_per_s"] for r in sort_rows(rows, "items_per_s", known)] == [30, 20, 10]
    assert [r["p99_ms"] for r in sort_rows(rows, "p99_ms", known, descending=True)] == \
        [5.0, 2.0, None]
    with pytest.raises(InferBenchError, match="unknown leaderboard column 'p98'; known "
                       "columns: p99_ms, items_per_s"):
        sort_rows(rows, "p98", known)
    table = format_table(rows, known).splitlines()
    assert table[0].split() == known and table[3].split() == ["-", "30.00"]
    assert "<td>&lt;b&gt;</td>" in format_html([{"x": "<b>"}], ["x"])


def test_family_rows_rank_by_the_recommenders_rule():
    def fam(run, items, p99, price=None, cost=None):
        return {"run_id": run, "platform": "p", "config_index": 0, "batch_size": 1,
                "capacity_rps": items, "capacity_items_per_s": items, "latency_at_slo_ms": p99,
                "usd_per_hour": price, "cost_per_million_items_usd": cost}

    # One price: most items/s first, the tie to the lower p99; no capacity last.
    rows = [fam("a", 100.0, 9.0, 1.0, 2.8), fam("none", None, None, 1.0),
            fam("b", 300.0, 20.0, 1.0, 0.9), fam("c", 100.0, 4.0, 1.0, 2.8)]
    assert [r["run_id"] for r in rank_families(rows)] == ["b", "c", "a", "none"]
    # Prices differ: cheapest per million inferences first, unpriced after the priced.
    rows = [fam("gpu", 3000.0, 5.0, 2.0, 0.19), fam("cpu", 100.0, 9.0, 0.05, 0.14),
            fam("free", 9000.0, 1.0)]
    assert [r["run_id"] for r in rank_families(rows)] == ["cpu", "gpu", "free"]


@pytest.mark.skipif(not __import__("analysis.quality_ge").quality_ge.available(),
                    reason="great_expectations (extra `quality`) is not installed")
def test_great_expectations_suite_judges_like_the_pure_expectations():
    from analysis.quality_ge import validate_run_ge

    clean = quality_point()
    cases = {
        "negative": quality_point(label="neg", latencies_ms=np.array([-1.0, 2.0])),
        "percentiles": quality_point(label="pct", latency_ms={"p50": 3.0, "p99": 2.0}),
        "rate": quality_point(label="rate", throughput_rps=11.5),
        "counts": quality_point(label="cnt", n_requests=3),
    }
    assert validate_run_ge([clean]) == (True, [])
    for name, bad in cases.items():
        ok, reasons = validate_run_ge([clean, bad])
        assert not ok and validate_run([clean, bad])[0] is False, name
        # One failing expectation, naming only the bad point.
        assert len(reasons) == 1 and f"(points: {bad['label']})" in reasons[0], reasons
