"""The recommender against a brute-force reading of the same generated data."""

from __future__ import annotations

import itertools
import random

import pytest

from analysis.recommend import best_point, recommend

PRICES = {"cpu:2vcpu": 0.067, "NVIDIA L4": 0.71, "NVIDIA H100": None}  # H100: no price known


def generated_points(seed: int, n: int = 48) -> list[dict]:
    rng = random.Random(seed)
    combos = list(itertools.product(["triton", "onnxruntime", "newplatform"], [1, 4, 8],
                                    [10.0, 40.0, 80.0], list(PRICES)))
    rows = []
    for i, (platform, batch, rate, hw) in enumerate(rng.sample(combos, n)):
        tp = rate * rng.uniform(0.8, 1.0)
        price = PRICES[hw]
        p99 = rng.uniform(2, 120)
        rows.append({"run_id": f"run{i:02d}", "platform": platform, "format": "onnx",
                     "hardware": hw, "model_name": "m", "batch_size": batch,
                     "target_rate_rps": rate, "concurrency": None, "throughput_rps": tp,
                     "latency_ms": {"p50": p99 / 3, "p99": p99, "p99_ci": [p99 * 0.9, p99 * 1.2]},
                     "verdict": rng.choice(["VALID", "VALID", "INVALID"]),
                     "usd_per_hour": price,
                     "cost_per_million_usd": None if price is None else
                     price / (tp * 3600) * 1e6})
    return rows


def brute_force_top1(rows, slo_ms, budget=None):
    ok = [r for r in rows if r["verdict"] == "VALID" and r["latency_ms"]["p99"] <= slo_ms
          and (budget is None or (r["usd_per_hour"] is not None
                                  and r["usd_per_hour"] <= budget))]
    priced = [r for r in ok if r["cost_per_million_usd"] is not None]
    if priced:
        return min(priced, key=lambda r: r["cost_per_million_usd"])
    return max(ok, key=lambda r: r["throughput_rps"] * r["batch_size"], default=None)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("slo_ms", "budget"), [(50, None), (20, None), (80, 0.5), (30, 0.05)])
def test_top1_is_the_brute_force_pick(seed, slo_ms, budget):
    rows = generated_points(seed)
    expected = brute_force_top1(rows, slo_ms, budget)
    recs = recommend(rows, slo_percentile=99, slo_ms=slo_ms, budget_usd_per_hour=budget)
    if expected is None:
        assert recs == []
        assert best_point(rows, slo_percentile=99, slo_ms=slo_ms,
                          budget_usd_per_hour=budget) is None
        return
    assert recs[0].run_id == expected["run_id"]
    assert best_point(rows, slo_percentile=99, slo_ms=slo_ms,
                      budget_usd_per_hour=budget) is expected  # the caller's own row
    assert len(recs) == min(3, len({r["run_id"] for r in rows if r["verdict"] == "VALID"
                                    and r["latency_ms"]["p99"] <= slo_ms
                                    and (budget is None or (r["usd_per_hour"] or 1e9)
                                         <= budget)}))
    for r in recs:  # every recommendation meets the SLO and the budget, with its evidence
        assert r.latency_ms <= slo_ms and r.verdict == "VALID"
        assert budget is None or r.usd_per_hour <= budget
        assert r.evidence[0].startswith(f"p99 = {r.latency_ms:.3f} ms")


def test_exact_ranking_and_evidence_on_a_small_table():
    def row(run, hw, price, tp, p99, batch=1):
        return {"run_id": run, "platform": "onnxruntime", "format": "onnx", "hardware": hw,
                "model_name": "m", "batch_size": batch, "target_rate_rps": 100.0,
                "throughput_rps": tp, "latency_ms": {"p99": p99, "p99_ci": [p99 - 1, p99 + 1]},
                "verdict": "VALID", "usd_per_hour": price,
                "cost_per_million_usd": None if price is None else price / (tp * 3600) * 1e6}
    rows = [row("a", "cpu:2vcpu", 3.6, 100.0, 10.0),  # $10 per million
            row("b", "L4", 7.2, 400.0, 12.0, batch=2),  # $5 per million
            row("c", "H100", None, 900.0, 5.0, batch=4),  # unpriced: after priced ones
            row("d", "T4", 0.36, 100.0, 60.0)]  # misses the SLO
    recs = recommend(rows, slo_percentile=99, slo_ms=50)
    assert [r.run_id for r in recs] == ["b", "a", "c"]
    assert recs[0].cost_per_million_usd == pytest.approx(5.0)
    assert recs[0].items_per_s == 800.0
    assert recs[0].evidence == [
        "p99 = 12.000 ms <= SLO 50 ms (p99 95% CI [11.000, 13.000] ms)",
        "verdict VALID (run b)", "throughput 400.0 req/s = 800.0 items/s",
        "cost $5.0000 per million requests at $7.200/h"]
    assert recs[2].ranked_by == "items/s (no price known)"
    assert [r.run_id for r in recommend(rows, slo_percentile=99, slo_ms=50,
                                        budget_usd_per_hour=4)] == ["a"]
