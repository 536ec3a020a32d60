"""The prediction from profiled levels, on levels built from a known queue."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from analysis.prediction import (
    IDLE_LEVEL,
    NEAR_OPEN_LEVEL,
    OPEN_LEVEL,
    Level,
    ServiceModel,
    fit,
    predict,
)
from analysis.queueing import mdc_mean_wait_ms


def known_levels(c: int, service_ms: float, overhead_ms: float,
                 first_service_ms: float | None = None, spread_ms: float = 0.02,
                 saturated_rps: float | None = None) -> list[Level]:
    """What profiling a c-worker server with deterministic service would measure: below
    c + 1 in flight no queueing; at c + 1 the workers never idle."""
    rng = np.random.default_rng(3)
    levels = []
    for k in range(1, c + 1):
        d = first_service_ms if (k == 1 and first_service_ms is not None) else service_ms
        lat = d + overhead_ms + rng.normal(0.0, spread_ms, 4000).clip(-3 * spread_ms,
                                                                        3 * spread_ms)
        levels.append(Level.from_latencies(k, lat, lat.sum() / 1000.0 / k))
    capacity = saturated_rps or 1000.0 * c / service_ms
    lat = np.full(4000, (c + 1) / capacity * 1000.0)
    levels.append(Level.from_latencies(c + 1, lat, 4000 / capacity))
    return levels


@pytest.mark.parametrize("c", [1, 2, 4])
@pytest.mark.parametrize("rho", [0.3, 0.9])
def test_deterministic_service_predicts_the_exact_queue_plus_overhead(c, rho):
    p = predict(known_levels(c, 5.0, 0.2), c)
    assert p.model.parallelism == c
    assert p.model.service_ms[-1] == pytest.approx(5.0)
    assert p.model.overhead_ms == pytest.approx(0.2, abs=1e-3)
    assert p.model.name.startswith(f"M/D/{c}")
    rate = rho * c / 5.0 * 1000.0
    lam = rate / 1000.0
    assert p.mean_ms(rate) == pytest.approx(5.2 + mdc_mean_wait_ms(lam, 5.0, c), rel=1e-3)


def test_p99_grows_with_load_and_capacity_meets_the_slo():
    p = predict(known_levels(1, 5.0, 0.2), 1)
    curve = p.curve([0.5, 20, 100, 150, 180])
    assert [pt.p99_ms for pt in curve] == sorted(pt.p99_ms for pt in curve)
    # Almost no arrival waits (0.25 %): the p99 is the service's own.
    assert curve[0].p99_ms == pytest.approx(5.2, abs=0.1)
    cap = p.capacity_rps(30.0)
    assert 100 < cap < 200
    assert p.at(cap, 99.0).percentile_ms == pytest.approx(30.0, rel=0.02)
    assert p.at(cap * 1.05, 99.0).percentile_ms > 30.0
    assert p.at(250.0).mean_ms is None  # beyond capacity: no steady state
    assert p.capacity_rps(4.0) is None  # below the service time itself


def test_cosmetatos_is_the_other_approximation():
    exact = predict(known_levels(4, 5.0, 0.2), 4)
    closed = predict(known_levels(4, 5.0, 0.2), 4, approximation="cosmetatos")
    assert "Cosmetatos" in closed.model.name
    assert closed.mean_ms(700) == pytest.approx(exact.mean_ms(700), rel=0.01)


def test_interference_uses_the_faster_lone_service_at_light_load():
    p = predict(known_levels(2, 5.0, 0.2, first_service_ms=3.0), 2)
    assert p.model.interference
    assert "interference" in p.model.name
    assert p.model.service_ms == pytest.approx((3.0, 5.0), abs=1e-3)
    assert p.mean_ms(1.0) == pytest.approx(3.2, abs=0.01)
    assert p.mean_ms(300.0) > p.mean_ms(100.0) > 3.2


def test_dynamic_batching_is_marked_unmodelled_not_predicted():
    p = predict(known_levels(1, 5.0, 0.2), 1, dynamic_batching=True)
    assert "dynamic batching" in p.model.unmodelled
    assert p.model.to_dict()["name"] is None
    with pytest.raises(ValueError, match="no prediction"):
        p.at(50.0)


def test_merged_requests_are_detected_from_the_profile():
    # Two in flight finish three times what one worker can: requests are merged.
    p = predict(known_levels(1, 5.0, 0.2, saturated_rps=600.0), 1)
    assert "merged" in p.model.unmodelled


def test_variable_service_blends_toward_mmc_and_heavy_tails_are_said():
    # At c = 1 the blend is exact for M/G/1 (Pollaczek-Khinchine): E[Wq] grows by
    # (1 + Cs^2) / 2 against deterministic service.
    det = predict(known_levels(1, 5.0, 0.0, spread_ms=1e-6), 1)
    var = predict(known_levels(1, 5.0, 0.0, spread_ms=1.5), 1)
    cs2 = var.model.cs2
    assert 0.05 < cs2 < 1
    assert "M/G/1" in var.model.name
    wq_det, wq_var = det.mean_ms(150) - 5.0, var.mean_ms(150) - 5.0
    assert wq_var / wq_det == pytest.approx(1 + cs2, rel=0.02)
    heavy = fit(known_levels(1, 5.0, 0.0, spread_ms=8.0), 1)
    assert any("heavy-tailed" in c for c in heavy.caveats)


def test_a_profile_without_the_saturated_level_is_refused():
    with pytest.raises(ValueError, match=r"lacks levels \[3\]"):
        fit(known_levels(2, 5.0, 0.2)[:2], 2)


def test_time_outside_the_workers_hidden_by_more_in_flight_keeps_the_declared_workers():
    # Four workers of 5 ms and 1.5 ms outside them: five in flight complete 1.3x what four
    # did (the fifth hides the others' overhead); six no more. It is still four workers.
    levels = known_levels(4, 5.0, 1.5)
    saturated = levels[-1]
    levels.append(Level(6, saturated.throughput_rps, 6000.0 / saturated.throughput_rps, 0.0,
                        saturated.n, saturated.quantiles_ms))
    p = predict(levels, 4)
    assert p.model.parallelism == 4
    assert p.model.service_ms[-1] == pytest.approx(5.0)
    assert p.model.overhead_ms == pytest.approx(1.5, abs=1e-3)
    assert not p.model.caveats


def test_more_workers_than_declared_are_modelled_as_the_declared_ones_plus_overhead():
    # Four workers described as one: the capacity is the measured plateau, the rest of a
    # lone request's latency is outside the one worker, and the closed loop agrees.
    levels = known_levels(4, 5.0, 0.2)
    p = predict(levels, 1)
    assert p.model.parallelism == 1
    assert p.model.capacity_rps == pytest.approx(800.0)
    assert p.model.overhead_ms == pytest.approx(5.2 - 1.25, abs=1e-3)
    # Cut at 3 in flight, the profile never saturated: the capacity is called a bound.
    partial = fit([lv for lv in levels if lv.in_flight <= 3], 2)
    assert any("not saturated" in c for c in partial.caveats)


def idle_level(latency_ms: float, rate_rps: float, spread_ms: float = 0.02) -> Level:
    """What the open-loop probe would measure of arrivals at an idle server."""
    rng = np.random.default_rng(5)
    lat = latency_ms + rng.normal(0.0, spread_ms, 2000).clip(-3 * spread_ms, 3 * spread_ms)
    level = Level.from_latencies(IDLE_LEVEL, lat, 10.0)
    return Level(IDLE_LEVEL, rate_rps, level.mean_ms, level.std_ms, level.n,
                 level.quantiles_ms)


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9])
def test_an_idle_arrival_cost_is_paid_by_the_arrivals_that_find_the_system_empty(rho):
    # M/D/1, D = 5 ms, 0.2 ms outside the queue; an arrival at an idle server takes 1 ms
    # more. P(empty) = 1 - rho (PASTA), so the mean rises by (1 - rho) ms.
    closed = predict(known_levels(1, 5.0, 0.2), 1)
    probed = predict([*known_levels(1, 5.0, 0.2), idle_level(6.2, 40.0)], 1)
    rate = rho * 200.0
    assert probed.mean_ms(rate) - closed.mean_ms(rate) == pytest.approx(1.0 - rho, abs=0.01)
    assert probed.model.idle_ms == pytest.approx(6.2, abs=0.01)
    assert "at an idle server (open-loop probe)" in probed.model.name
    assert probed.model.to_dict()["idle_ms"] == pytest.approx(6.2, abs=0.01)
    assert closed.model.to_dict()["idle_ms"] is None
    # The capacity and the queue are the closed loop's: the probe changes who pays what.
    assert probed.model.capacity_rps == closed.model.capacity_rps


def test_an_idle_arrival_law_with_a_tail_moves_the_light_load_p99():
    # 2 % of the idle arrivals take 8 ms longer (a wake-up from a deep sleep): at light
    # load nearly every arrival finds the server idle, so the p99 is that tail's.
    rng = np.random.default_rng(7)
    lat = np.where(rng.random(5000) < 0.02, 14.2, 6.2)
    tail = Level.from_latencies(IDLE_LEVEL, lat, 10.0)
    closed = predict(known_levels(1, 5.0, 0.2), 1)
    probed = predict([*known_levels(1, 5.0, 0.2), tail], 1)
    assert closed.at(2.0).p99_ms == pytest.approx(5.2, abs=0.1)
    assert probed.at(2.0).p99_ms > 13.0
    # Near capacity few arrivals find the system empty: the queue decides the tail.
    near = 0.95 * 200.0
    assert probed.at(near).p99_ms == pytest.approx(closed.at(near).p99_ms, rel=0.05)


def test_with_several_workers_only_an_empty_system_pays_the_idle_cost():
    closed = predict(known_levels(2, 5.0, 0.2), 2)
    probed = predict([*known_levels(2, 5.0, 0.2), idle_level(6.2, 80.0)], 2)
    rate = 0.5 * 400.0
    p_empty = closed._chain(rate / 1000.0)[0][0]
    assert 0.2 < p_empty < 0.5
    assert probed.mean_ms(rate) - closed.mean_ms(rate) == pytest.approx(p_empty, abs=0.01)


def loaded_level(rate_rps: float, service_ms: float, overhead_ms: float = 0.2,
                 extra_ms: float = 0.0, n: int = 2000, in_flight: int = OPEN_LEVEL) -> Level:
    """What the loaded open-loop probe would measure of a one-worker server of constant
    service `service_ms` (FIFO) on seeded Poisson arrivals at `rate_rps`, `extra_ms` added
    to every latency."""
    rng = np.random.default_rng(13)
    arrivals = np.cumsum(rng.exponential(1000.0 / rate_rps, n))
    free, lat = -np.inf, np.empty(n)
    for i, a in enumerate(arrivals):
        free = max(a, free) + service_ms
        lat[i] = free - a + overhead_ms + extra_ms
    level = Level.from_latencies(in_flight, lat, (arrivals[-1] - arrivals[0]) / 1000.0)
    return replace(level, arrivals_ms=tuple(arrivals - arrivals[0]), latencies_ms=tuple(lat))


def test_the_loaded_probe_scales_the_service_to_its_mean():
    # The closed loop measured D = 5 ms; under open-loop load the server serves in 6 ms.
    p = predict([*known_levels(1, 5.0, 0.2), loaded_level(100.0, 6.0)], 1)
    # Replayed on the probe's own arrivals, the factor is exact whatever the sample's luck.
    (probe_rate, factor), = p.model.open_loop_factors
    assert factor == pytest.approx(1.2, rel=1e-3)
    assert probe_rate == pytest.approx(100.0, rel=0.1)  # the probe's measured rate
    # One probe: the same factor at every rate; the closed loop's service is kept apart.
    assert p.model.factor_at(10.0) == p.model.factor_at(190.0) == factor
    assert p.model.service_ms[-1] == pytest.approx(5.0)
    assert p.model.at_rate(150.0).service_ms[-1] == pytest.approx(6.0, rel=1e-3)
    assert p.model.capacity_rps == pytest.approx(1000 / 6.0, rel=1e-3)
    assert re.search(r"service x1\.20 at [\d.]+ req/s under open-loop load", p.model.name)
    # The whole curve is then the slower queue's, its tail included.
    rate = 150.0
    assert p.mean_ms(rate) == pytest.approx(0.2 + 6.0 + mdc_mean_wait_ms(0.15, 6.0, 1),
                                            rel=1e-3)
    assert p.at(1.0).p99_ms == pytest.approx(6.2, abs=0.1)  # the level's law, scaled
    assert not p.model.caveats
    assert Level.from_dict(p.levels[0].to_dict()).arrivals_ms == pytest.approx(
        p.levels[0].arrivals_ms, abs=1e-4)


def test_a_probe_that_agrees_with_the_closed_loop_keeps_its_service():
    # A short unlucky sample's mean is off the stationary queue's, but replayed on its own
    # arrivals the server is exactly the closed loop's: no factor.
    short = loaded_level(100.0, 5.0, n=150)
    p = predict([*known_levels(1, 5.0, 0.2), short], 1)
    assert p.model.factor_at(100.0) == 1.0 and p.model.capacity_rps == pytest.approx(200.0)
    # 0.3 ms of noise on each request leaves it within its error too.
    rng = np.random.default_rng(2)
    noisy = replace(short, latencies_ms=tuple(np.asarray(short.latencies_ms)
                                              + rng.normal(0, 0.3, 150)))
    assert predict([*known_levels(1, 5.0, 0.2), noisy], 1).model.factor_at(100.0) == 1.0


def test_a_loaded_probe_far_off_the_model_is_bounded_and_said():
    # A server that is at its capacity under open-loop load: the latencies pile up.
    p = predict([*known_levels(1, 5.0, 0.2), loaded_level(100.0, 9.9)], 1)
    assert p.model.capacity_rps == pytest.approx(1000 / 9.9, rel=0.01)
    assert any("near or beyond its capacity" in c for c in p.model.caveats)
    # Faster than the closed loop allows even at a quarter of its service.
    fast = predict([*known_levels(1, 5.0, 0.2), loaded_level(100.0, 0.5, 0.0)], 1)
    assert fast.model.factor_at(100.0) == pytest.approx(0.25)
    assert any("faster than the model allows" in c for c in fast.model.caveats)


def test_without_probes_the_model_says_nothing_of_them():
    p = predict(known_levels(2, 5.0, 0.2), 2)
    d = p.model.to_dict()
    assert d["idle_ms"] is None and d["open_loop_factors"] == []
    assert "open-loop" not in p.model.name


def test_two_loaded_probes_scale_the_service_by_the_load():
    # The server serves in 6 ms at 100 req/s and in 5.5 ms at 160 req/s under open-loop
    # load (closed loop: 5 ms): the factor falls from 1.2 to 1.1 between the probes.
    p = predict([*known_levels(1, 5.0, 0.2), loaded_level(100.0, 6.0),
                 loaded_level(160.0, 5.5, in_flight=NEAR_OPEN_LEVEL)], 1)
    (low_rate, low_f), (high_rate, high_f) = p.model.open_loop_factors
    assert low_f == pytest.approx(1.2, rel=1e-3) and high_f == pytest.approx(1.1, rel=1e-3)
    middle = 0.5 * (low_rate + high_rate)
    assert p.model.factor_at(middle) == pytest.approx(1.15, rel=1e-3)
    assert p.model.factor_at(1.0) == low_f and p.model.factor_at(1000.0) == high_f
    # Beyond the near probe the factor is held: the capacity is the 5.5 ms queue's.
    assert p.model.capacity_rps == pytest.approx(1000 / 5.5, rel=1e-3)
    assert p.mean_ms(170.0) == pytest.approx(0.2 + 5.5 + mdc_mean_wait_ms(0.17, 5.5, 1),
                                             rel=1e-3)
    service = 5.0 * p.model.factor_at(middle)
    assert p.mean_ms(middle) == pytest.approx(
        0.2 + service + mdc_mean_wait_ms(middle / 1000.0, service, 1), rel=1e-3)
    assert re.search(r"service x1\.20 at [\d.]+ req/s to x1\.10 at [\d.]+ req/s",
                     p.model.name)
    assert [k["factor"] for k in p.model.to_dict()["open_loop_factors"]] == pytest.approx(
        [1.2, 1.1], rel=1e-3)
    # Only a point above the near probe's rate rests on a held factor, and says so.
    assert not p.at(middle).beyond_probes and not p.at(high_rate).beyond_probes
    above = p.at(1.05 * high_rate)
    assert above.beyond_probes and above.to_dict()["beyond_probes"] is True
    closed_only = predict(known_levels(1, 5.0, 0.2), 1)
    assert not closed_only.at(150.0).beyond_probes  # no factor at all: nothing held


def test_a_capacity_between_the_probes_is_where_the_load_reaches_one():
    # f rising from 1 at 100 req/s to 1.2 at 180 req/s: 180 x 1.2 x 5 ms is past 1, so the
    # capacity is the rate between them where rate x f(rate) x 5 ms = 1.
    model = ServiceModel(1, (5.0,), 0.2, 0.0, "exact",
                         open_loop_factors=((100.0, 1.0), (180.0, 1.2)))
    capacity = model.capacity_rps
    assert 100.0 < capacity < 180.0
    assert capacity * model.factor_at(capacity) * 5.0 / 1000.0 == pytest.approx(1.0, abs=1e-9)
