"""Capacity at SLO per family, its bracket and the one ranking rule, on constructed point
records whose answer is known by hand."""

from __future__ import annotations

import pytest

from analysis.capacity import (
    BY_COST,
    BY_ITEMS,
    BY_ITEMS_UNPRICED,
    answer,
    capacities,
    family_capacity,
    judge_rung,
    rank,
)

SLO = {"slo_percentile": 99.0, "slo_ms": 50.0}
TOO_SHORT = "ran 3.0 s < min_duration_s 10.0 (stopped by max_duration)"


def rung(point, rate=None, *, p99, tp=None, clients=None, verdict="VALID", n_failed=0,
         batch=1, platform="onnxruntime", config_index=0, server="db=off,inst=1", run="r1",
         price=None, energy=None, reasons=None):
    """One point record (as analysis.points describes them) of a family's ladder."""
    return {"run_id": run, "name": f"run-{run}", "platform": platform, "format": "onnx",
            "hardware": "cpu:2vcpu", "model_name": "m", "config_index": config_index,
            "server_config": server, "batch_size": batch, "point": point,
            "arrival": "closed_loop" if clients is not None else "poisson",
            "target_rate_rps": rate, "concurrency": clients,
            "throughput_rps": (rate if tp is None else tp), "n_failed": n_failed,
            "latency_ms": {"p50": p99 / 2, "p99": p99, "p99_ci": [p99 - 1, p99 + 1]},
            "verdict": verdict, "reasons": reasons or [],
            "usd_per_hour": price, "energy_j_per_request": energy,
            "energy_method": None if energy is None else "estimate_cpu_tdp"}


def geometric_then_bisection(**kw):
    """10, 20, 40, 80 req/s (80 fails on p99), then bisection: 60 (the server fell behind)
    and 50 (holds). Capacity 50 req/s; bracket 60 req/s, for want of throughput."""
    return [rung(0, 10.0, p99=5.0, energy=2.0, **kw), rung(1, 20.0, p99=8.0, energy=1.5, **kw),
            rung(2, 40.0, p99=20.0, energy=1.2, **kw), rung(3, 80.0, p99=120.0, tp=70.0, **kw),
            rung(4, 60.0, p99=45.0, tp=54.0, **kw),
            rung(5, 50.0, p99=40.0, tp=49.0, energy=1.0, **kw)]


def test_capacity_is_the_highest_valid_rung_that_holds_with_its_bracket():
    f = family_capacity(geometric_then_bisection(batch=8, price=3.6), **SLO)
    assert [r.offered for r in f.rungs] == [10, 20, 40, 50, 60, 80]
    assert [r.holds for r in f.rungs] == [True, True, True, True, False, False]
    assert f.capacity.point == 5 and f.capacity_rps == 50.0
    assert f.capacity_items_per_s == 400.0 and f.latency_ms == 40.0
    assert not f.search_cap_reached
    assert f.bracket.to_dict() == {
        "offered": 60.0, "point": 4, "verdict": "VALID",
        "reason": "achieved 54.0 of 60 req/s offered (< 95%)", "latency_ms": 45.0,
        "achieved_rps": 54.0}
    # At capacity: $3.6/h / (50 req/s x 3600 s/h) x 1e6 = $20 per million requests, and a
    # batch-8 request carries 8 inferences: $2.50 per million inferences. Energy as
    # measured at the capacity rung (point 5), not at the cheapest-looking point.
    assert f.cost_per_million_usd == pytest.approx(20.0, rel=1e-12)
    assert f.cost_per_million_items_usd == pytest.approx(2.5, rel=1e-12)
    assert f.energy_j_per_request == 1.0 and f.energy_method == "estimate_cpu_tdp"
    assert f.statement() == ("capacity 50 req/s (400 items/s); 60 req/s failed: achieved "
                             "54.0 of 60 req/s offered (< 95%)")


def test_each_reason_a_rung_fails_and_invalid_rungs_never_hold():
    rows = [rung(0, 10.0, p99=5.0),
            rung(1, 20.0, p99=6.0, verdict="INVALID", reasons=[TOO_SHORT]),  # below: ignored
            rung(2, 30.0, p99=7.0),
            rung(3, 40.0, p99=8.0, verdict="INVALID", reasons=[TOO_SHORT]),  # in the SLO
            rung(4, 50.0, p99=9.0, n_failed=3),
            rung(5, 60.0, p99=70.0),
            rung(6, 70.0, p99=9.0, verdict="INVALID", reasons=[TOO_SHORT], n_failed=2)]
    f = family_capacity(rows, **SLO)
    assert f.capacity_rps == 30.0
    assert [(r.offered, r.reason) for r in f.rungs if not r.holds] == [
        (20.0, f"INVALID: {TOO_SHORT}"),
        (40.0, f"INVALID: {TOO_SHORT}"),
        (50.0, "3 failed requests"),
        (60.0, "p99 70.0 ms > 50 ms"),
        (70.0, f"INVALID: {TOO_SHORT}; 2 failed requests")]
    assert (f.bracket.offered, f.bracket.verdict, f.bracket.reason) == \
        (40.0, "INVALID", f"INVALID: {TOO_SHORT}")
    # The VALID / INVALID verdict and the SLO stay apart: the INVALID rung met the SLO.
    assert f.rungs[3].judgement.holds and not f.rungs[3].holds


def test_closed_loop_capacity_is_what_the_highest_holding_concurrency_achieved():
    rows = [rung(0, clients=1, tp=100.0, p99=4.0), rung(1, clients=2, tp=190.0, p99=6.0),
            rung(2, clients=4, tp=350.0, p99=12.0), rung(3, clients=8, tp=400.0, p99=60.0)]
    f = family_capacity([{**r, "batch_size": 2} for r in rows], **SLO)
    assert not f.open_loop and f.capacity.offered == 4.0
    assert f.capacity_rps == 350.0 and f.capacity_items_per_s == 700.0
    assert (f.bracket.offered, f.bracket.reason) == (8.0, "p99 60.0 ms > 50 ms")
    # A closed loop offers only what completes: 100 req/s "of 1 client" is not a shortfall.
    assert f.rungs[0].holds
    assert f.statement() == ("capacity 350 req/s at 4 clients (700 items/s); 8 clients "
                             "failed: p99 60.0 ms > 50 ms")


def test_a_single_point_old_run_is_a_lower_bound_at_the_search_cap():
    f = family_capacity([rung(0, 40.0, p99=6.5, tp=39.9, batch=8)], **SLO)
    assert f.capacity_rps == 40.0 and f.capacity_items_per_s == 320.0
    assert f.search_cap_reached and f.bracket is None
    assert f.statement() == "capacity >= 40 req/s (>= 320 items/s, search cap reached)"
    assert f.to_dict()["capacity_bracket"] is None


def test_a_failing_rung_below_does_not_lower_the_capacity():
    # An explicit list may hold a noisy failure below a rung that holds: the capacity is
    # the highest rung that holds, and nothing above it failed.
    f = family_capacity([rung(0, 10.0, p99=5.0), rung(1, 20.0, p99=60.0),
                         rung(2, 30.0, p99=40.0)], **SLO)
    assert f.capacity_rps == 30.0 and f.search_cap_reached


def test_a_repeated_load_is_decided_by_its_latest_point():
    late = ["3.1 % of requests were sent more than 1 ms late (> 1 %): the load generator "
            "fell behind"]
    # 20 req/s measured twice: INVALID, then VALID and within the SLO; the repeat decides.
    f = family_capacity([rung(0, 10.0, p99=5.0), rung(1, 20.0, p99=8.0, verdict="INVALID",
                                                        reasons=late),
                         rung(2, 20.0, p99=9.0), rung(3, 40.0, p99=90.0)], **SLO)
    assert [(r.offered, r.point) for r in f.rungs] == [(10, 0), (20, 2), (40, 3)]
    assert f.capacity.point == 2 and f.deciding_rung.verdict == "VALID"
    # Nothing holds: the answer rests on the lowest load's latest point.
    none = family_capacity([rung(0, 10.0, p99=5.0, verdict="INVALID", reasons=late),
                            rung(1, 10.0, p99=60.0)], **SLO)
    assert none.capacity is None and none.deciding_rung.point == 1


def test_no_answer_says_how_far_the_lowest_load_was():
    rows = [rung(0, 10.0, p99=72.3), rung(1, 20.0, p99=150.0),
            rung(0, 10.0, p99=95.0, platform="triton")]
    families = capacities(rows, **SLO)
    assert [f.capacity for f in families] == [None, None]
    assert families[0].statement() == ("no load tried meets p99 <= 50 ms; the lowest "
                                       "(10 req/s) had p99 72.3 ms")
    assert answer(families, **SLO) == (
        "no configuration meets p99 <= 50 ms; the lowest load tried (10 req/s) had p99 "
        "72.3 ms (onnxruntime b1 [db=off,inst=1])")
    # Within the SLO but not trusted: the reason is said, not only the latency.
    invalid = capacities([rung(0, 10.0, p99=5.0, verdict="INVALID", reasons=[TOO_SHORT])],
                         **SLO)
    assert answer(invalid, **SLO) == (
        "no configuration meets p99 <= 50 ms; the lowest load tried (10 req/s) had p99 "
        f"5.0 ms (INVALID: {TOO_SHORT}) (onnxruntime b1 [db=off,inst=1])")
    assert answer([], **SLO) == "no configuration meets p99 <= 50 ms: no load level was measured"


def test_rank_by_items_per_second_ties_by_tail_latency_never_by_measured_noise():
    # The demo's case: every b8 family ran at 40 req/s; torchserve measured 349.335 items/s
    # and onnxruntime 349.334, but both carried 40 req/s = 320 items/s within the SLO, and
    # onnxruntime did it at the lower p99.
    rows = [rung(0, 40.0, p99=31.5, tp=349.335 / 8, batch=8, platform="torchserve"),
            rung(0, 40.0, p99=6.5, tp=349.334 / 8, batch=8, platform="onnxruntime"),
            rung(0, 40.0, p99=3.0, tp=40.0, batch=1, platform="triton")]
    ranked = rank(capacities(rows, **SLO))
    assert [(r.rank, r.family.platform, r.ranked_by) for r in ranked] == [
        (1, "onnxruntime", BY_ITEMS), (2, "torchserve", BY_ITEMS), (3, "triton", BY_ITEMS)]


def test_rank_by_cost_per_million_inferences_where_prices_differ():
    rows = [*geometric_then_bisection(run="cpu", price=0.36, batch=1),  # 50 items/s
            *(rung(i, r, p99=10.0, run="l4", price=7.2, batch=4)
              for i, r in enumerate([100.0, 200.0])),  # >= 800 items/s
            rung(0, 1000.0, p99=10.0, run="h100", batch=8)]  # no price known
    ranked = rank(capacities(rows, **SLO))
    # cpu: $0.36/h / (50 x 3600) x 1e6 = $2 per million; l4: $7.2/h / (200 x 3600) x 1e6
    # = $10 per million requests, $2.50 per million inferences.
    assert [(r.family.run_id, r.ranked_by) for r in ranked] == [
        ("cpu", BY_COST), ("l4", BY_COST), ("h100", BY_ITEMS_UNPRICED)]
    assert ranked[0].family.cost_per_million_items_usd == pytest.approx(2.0, rel=1e-12)
    assert ranked[1].family.cost_per_million_items_usd == pytest.approx(2.5, rel=1e-12)
    # A budget drops what costs more per hour and what has no known price.
    assert [r.family.run_id for r in rank(capacities(rows, **SLO),
                                          budget_usd_per_hour=1.0)] == ["cpu"]


def test_the_banner_says_it_in_one_line():
    # $0.214272/h at 1,240 req/s is $0.048 per million requests, $0.006 per million
    # inferences at batch 8.
    rows = [rung(0, 620.0, p99=20.0, batch=8, server="db=on,inst=1", price=0.214272),
            rung(1, 1240.0, p99=41.2, batch=8, server="db=on,inst=1", price=0.214272),
            rung(2, 1300.0, p99=61.0, batch=8, server="db=on,inst=1", price=0.214272)]
    assert answer(capacities(rows, **SLO), **SLO) == (
        "Best within p99 <= 50 ms: onnxruntime b8 [db=on,inst=1] - 1,240 req/s "
        "(9,920 items/s), $0.048 per million requests ($0.006 per million inferences)")
    bound = capacities([rung(0, 40.0, p99=6.5, batch=8)], **SLO)
    assert answer(bound, **SLO) == (
        "Best within p99 <= 50 ms: onnxruntime b8 [db=off,inst=1] - >= 40 req/s "
        "(>= 320 items/s, search cap reached), no price known")


def test_judge_rung_keeps_its_signature_and_order_of_reasons():
    j = judge_rung(offered=100.0, achieved_rps=90.0, latency_at_slo_ms=80.0, n_failed=0,
                   slo_percentile=99, slo_ms=50)
    assert (j.holds, j.reason, j.achieved_ratio) == \
        (False, "achieved 90.0 of 100 req/s offered (< 95%)", 0.9)


def test_a_poisson_count_short_of_its_nominal_rate_is_not_a_server_falling_behind():
    # 40 req/s nominal, but the seeded schedule sent 33.0 req/s over the rung and the
    # server completed 32.4: it kept up (32.4 >= 0.95 x 33.0 = 31.35). Without the sent
    # rate (a run analysed before it was stored) the nominal rate is the reference.
    kept_up = rung(0, 40.0, p99=4.1, tp=32.4)
    assert family_capacity([{**kept_up, "sent_rps": 33.0}], **SLO).capacity_rps == 40.0
    f = family_capacity([kept_up], **SLO)
    assert f.capacity is None
    assert f.rungs[0].reason == "achieved 32.4 of 40 req/s offered (< 95%)"
    behind = family_capacity([{**rung(0, 40.0, p99=4.1, tp=30.0), "sent_rps": 39.5}], **SLO)
    assert behind.rungs[0].reason == "achieved 30.0 of 40 req/s offered, 39.5 sent (< 95%)"
    # A closed loop sends what completes: no sent rate is used there.
    closed = family_capacity([{**rung(0, clients=4, tp=30.0, p99=4.1), "sent_rps": 99.0}],
                             **SLO)
    assert closed.capacity_rps == 30.0


def test_the_answer_rests_on_the_capacity_rung_not_on_the_overload_probes():
    """A search drives rungs into overload on purpose; an INVALID rung above the bracket
    decides nothing, an INVALID bracket leaves the capacity a lower bound (a caveat) unless
    the server failed there on its own account (fell behind, or requests failed)."""
    overloaded = [rung(0, 10.0, p99=5.0), rung(1, 20.0, p99=8.0),
                  rung(2, 40.0, p99=900.0, tp=40.0, verdict="INVALID",
                       reasons=["30 % of requests were sent more than 1 ms late"]),
                  rung(3, 30.0, p99=60.0)]
    f = family_capacity(overloaded, **SLO)
    assert f.deciding_rung.offered == 20.0 and f.deciding_rung.verdict == "VALID"
    assert f.bracket.offered == 30.0 and f.caveats() == []

    invalid_bracket = family_capacity(overloaded[:3], **SLO)
    assert invalid_bracket.deciding_rung.offered == 20.0
    (caveat,) = invalid_bracket.caveats()
    assert caveat.startswith("onnxruntime b1 [db=off,inst=1]: the capacity is a lower bound; "
                             "the next load tried (40) was not measured validly: INVALID: ")
    # late sends cannot make a server complete less of what was sent, nor fail requests
    for failing in ({"throughput_rps": 30.0, "sent_rps": 39.8}, {"n_failed": 12}):
        fell_behind = family_capacity([*overloaded[:2], {**overloaded[2], **failing}], **SLO)
        assert fell_behind.bracket.offered == 40.0 and fell_behind.caveats() == []
        assert fell_behind.bracket.reason.startswith("INVALID: ")  # the verdict still shown


def test_with_no_rung_holding_the_lowest_rung_decides():
    f = family_capacity([rung(0, 10.0, p99=70.0, verdict="INVALID", reasons=["too short"]),
                         rung(1, 20.0, p99=90.0)], **SLO)
    assert f.capacity is None
    assert f.deciding_rung.offered == 10.0 and f.deciding_rung.verdict == "INVALID"
