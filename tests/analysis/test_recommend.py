"""The recommender against a brute-force reading of the same generated ladders, and its
evidence on a small table worked by hand."""

from __future__ import annotations

import itertools
import random

import pytest

from analysis.recommend import best_point, recommend

PRICES = {"cpu:2vcpu": 0.067, "NVIDIA L4": 0.71, "NVIDIA H100": None}  # H100: no price known
SPEED = {"cpu:2vcpu": 1.0, "NVIDIA L4": 20.0, "NVIDIA H100": 50.0}  # ladders scale with it
RATES = (10.0, 20.0, 40.0, 80.0)


def generated_families(seed: int, n: int = 24) -> list[dict]:
    """n families (one run each: a run has one hardware), each a ladder of four rates whose
    p99 grows with the load; some rungs fall behind, fail requests or are INVALID."""
    rng = random.Random(seed)
    combos = list(itertools.product(["triton", "onnxruntime", "newplatform"], [1, 4, 8],
                                    list(PRICES)))
    rows = []
    for i, (platform, batch, hw) in enumerate(rng.sample(combos, n)):
        p99 = rng.uniform(1, 30)
        for point, rate in enumerate(r * SPEED[hw] for r in RATES):
            p99 *= rng.uniform(1.0, 2.5)
            price = PRICES[hw]
            rows.append({"run_id": f"run{i:02d}", "platform": platform, "format": "onnx",
                         "hardware": hw, "model_name": "m", "batch_size": batch,
                         "config_index": 0, "server_config": "db=off,inst=1", "point": point,
                         "arrival": "poisson", "target_rate_rps": rate, "concurrency": None,
                         "throughput_rps": rate * rng.choice([1.0, 0.99, 0.9]),
                         "n_failed": rng.choice([0, 0, 0, 0, 2]),
                         "latency_ms": {"p50": p99 / 3, "p99": p99,
                                        "p99_ci": [p99 * 0.9, p99 * 1.2]},
                         "verdict": rng.choice(["VALID", "VALID", "VALID", "INVALID"]),
                         "reasons": [], "usd_per_hour": price})
    return rows


def brute_force_top1(rows, slo_ms, budget=None):
    """The rule written out longhand: per family the highest rate whose rung is VALID, has
    p99 <= SLO, achieved >= 95 % and no failure; priced families by cost per million
    inferences at that rate when prices differ, else by items/s; ties by p99."""
    best_of = {}
    for r in rows:
        holds = (r["verdict"] == "VALID" and r["latency_ms"]["p99"] <= slo_ms
                 and r["throughput_rps"] >= 0.95 * r["target_rate_rps"] and not r["n_failed"])
        if holds and (r["run_id"] not in best_of
                      or r["target_rate_rps"] > best_of[r["run_id"]]["target_rate_rps"]):
            best_of[r["run_id"]] = r
    caps = [r for r in best_of.values()
            if budget is None or (r["usd_per_hour"] is not None and r["usd_per_hour"] <= budget)]
    if not caps:
        return None
    items = {id(r): r["target_rate_rps"] * r["batch_size"] for r in caps}
    if len({r["usd_per_hour"] for r in caps if r["usd_per_hour"] is not None}) > 1:
        priced = [r for r in caps if r["usd_per_hour"] is not None]
        return min(priced, key=lambda r: (r["usd_per_hour"] / (items[id(r)] * 3600) * 1e6,
                                          r["latency_ms"]["p99"]))
    return min(caps, key=lambda r: (-items[id(r)], r["latency_ms"]["p99"]))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("slo_ms", "budget"), [(50, None), (20, None), (80, 0.5), (30, 0.05)])
def test_top1_is_the_brute_force_pick(seed, slo_ms, budget):
    rows = generated_families(seed)
    expected = brute_force_top1(rows, slo_ms, budget)
    recs = recommend(rows, slo_percentile=99, slo_ms=slo_ms, budget_usd_per_hour=budget)
    best = best_point(rows, slo_percentile=99, slo_ms=slo_ms, budget_usd_per_hour=budget)
    if expected is None:
        assert recs == [] and best is None
        return
    assert (recs[0].run_id, recs[0].capacity_rps) == \
        (expected["run_id"], expected["target_rate_rps"])
    assert best is expected  # the caller's own row: the capacity rung
    for r in recs:  # every recommendation holds under the SLO and the budget
        assert r.latency_ms <= slo_ms and r.verdict == "VALID"
        assert r.capacity_items_per_s == r.capacity_rps * r.batch_size
        assert budget is None or r.usd_per_hour <= budget


def row(run, hw, price, ladder, batch=1, platform="onnxruntime"):
    """A family's ladder: (rate, achieved, p99) per rung."""
    return [{"run_id": run, "platform": platform, "format": "onnx", "hardware": hw,
             "model_name": "m", "batch_size": batch, "config_index": 0,
             "server_config": "db=off,inst=1", "point": i, "arrival": "poisson",
             "target_rate_rps": rate, "throughput_rps": tp, "n_failed": 0,
             "latency_ms": {"p99": p99, "p99_ci": [p99 - 1, p99 + 1]}, "verdict": "VALID",
             "reasons": [], "usd_per_hour": price, "energy_j_per_request": 0.5}
            for i, (rate, tp, p99) in enumerate(ladder)]


def test_first_is_the_highest_capacity_not_the_highest_measured_throughput():
    # "a" measured the most (990 req/s at its top rung) but that rung missed the SLO: its
    # capacity is 500 req/s. "b" carries 800 req/s within the SLO. One price: items/s.
    rows = [*row("a", "cpu:2vcpu", 3.6, [(500.0, 500.0, 10.0), (1000.0, 990.0, 80.0)],
                 platform="triton"),
            *row("b", "cpu:2vcpu", 3.6, [(400.0, 400.0, 5.0), (800.0, 796.0, 30.0),
                                         (1600.0, 1100.0, 45.0)])]
    recs = recommend(rows, slo_percentile=99, slo_ms=50)
    assert [(r.run_id, r.capacity_rps, r.ranked_by) for r in recs] == [
        ("b", 800.0, "capacity at SLO in items/s"), ("a", 500.0, "capacity at SLO in items/s")]
    assert recs[0].evidence == [
        "capacity 800 req/s (800 items/s); 1,600 req/s failed: achieved 1100.0 of 1600 "
        "req/s offered (< 95%)",
        "p99 = 30.000 ms <= SLO 50 ms at capacity (p99 95% CI [29.000, 31.000] ms)",
        "verdict VALID (run b, point 1); achieved 796.0 req/s",
        "cost $1.25 per million requests, $1.25 per million inferences at $3.600/h"]
    assert recs[0].bracket == {"offered": 1600.0, "point": 2, "verdict": "VALID",
                               "reason": "achieved 1100.0 of 1600 req/s offered (< 95%)",
                               "latency_ms": 45.0, "achieved_rps": 1100.0}
    # The same configuration measured by two runs is listed once, at its best.
    again = row("c", "cpu:2vcpu", 3.6, [(700.0, 700.0, 20.0)])
    assert [(r.run_id, r.capacity_rps) for r in recommend([*rows, *again], slo_percentile=99,
                                                          slo_ms=50)] == \
        [("b", 800.0), ("a", 500.0)]


def test_cost_per_million_inferences_decides_where_prices_differ():
    rows = [*row("cpu", "cpu:2vcpu", 3.6, [(100.0, 100.0, 10.0)]),  # $10 per million
            *row("l4", "L4", 7.2, [(400.0, 400.0, 12.0)], batch=2),  # $5, $2.50 per inference
            *row("h100", "H100", None, [(900.0, 900.0, 5.0)], batch=4),  # unpriced: last
            *row("t4", "T4", 0.36, [(100.0, 100.0, 60.0)])]  # misses the SLO
    recs = recommend(rows, slo_percentile=99, slo_ms=50)
    assert [(r.run_id, r.ranked_by) for r in recs] == [
        ("l4", "cost per million inferences at capacity"),
        ("cpu", "cost per million inferences at capacity"),
        ("h100", "capacity at SLO in items/s (no price known)")]
    assert recs[0].cost_per_million_usd == pytest.approx(5.0, rel=1e-12)
    assert recs[0].cost_per_million_items_usd == pytest.approx(2.5, rel=1e-12)
    assert recs[0].search_cap_reached and recs[0].evidence[0] == (
        "capacity >= 400 req/s (>= 800 items/s, search cap reached); the highest load tried "
        "(400 req/s) still holds: search cap reached")
    assert recs[2].evidence[-1] == "no price known for this hardware"
    assert [r.run_id for r in recommend(rows, slo_percentile=99, slo_ms=50,
                                        budget_usd_per_hour=4)] == ["cpu"]
