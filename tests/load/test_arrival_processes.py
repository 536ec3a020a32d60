"""Statistics of every open-loop arrival process, exact and deterministic via fixed seeds.

Tolerances are a few standard errors of each statistic at the sample size used, so a
correct generator passes for any seed and these fixed seeds make the outcome exact.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from inferbench.errors import InferBenchError
from inferbench.load.arrivals import (
    constant_offsets_ns,
    gamma_offsets_ns,
    load_trace,
    partition_offsets_ns,
    poisson_offsets_ns,
    ramp_rate,
    schedule_for,
    spike_rate,
    step_rate,
    thinned_offsets_ns,
)
from inferbench.spec import Arrival, WorkloadSpec


def take(it, n: int) -> np.ndarray:
    return np.fromiter(itertools.islice(it, n), dtype=np.int64)


def until(it, horizon_s: float) -> np.ndarray:
    return np.fromiter(itertools.takewhile(lambda t: t < horizon_s * 1e9, it), dtype=np.int64)


def ks_exponential(gaps_s: np.ndarray, rate: float) -> float:
    """Kolmogorov-Smirnov distance between the gaps and Exp(rate)."""
    x = np.sort(gaps_s)
    n = x.size
    cdf = 1 - np.exp(-rate * x)
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


def ks_critical(n: int, alpha: float = 0.01) -> float:
    return math.sqrt(-0.5 * math.log(alpha / 2)) / math.sqrt(n)


def test_poisson_gaps_pass_ks_for_exponential():
    rate, n = 150.0, 20_000
    gaps_s = np.diff(take(poisson_offsets_ns(rate, seed=11), n), prepend=0) / 1e9
    assert ks_exponential(gaps_s, rate) < ks_critical(n)
    # ...and the test has power: a constant-rate stream at the same mean is rejected.
    const = np.diff(take(constant_offsets_ns(rate), n), prepend=0) / 1e9
    assert ks_exponential(const, rate) > 10 * ks_critical(n)


def test_constant_rate_has_equal_gaps_without_drift():
    t = take(constant_offsets_ns(300.0), 300_000)
    gaps = np.diff(t)
    assert gaps.min() >= 3_333_332 and gaps.max() <= 3_333_334  # integer ns rounding only
    assert t[-1] == int(300_000 * 1e9 / 300.0)  # the 300000th send is at exactly 1000 s


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0, 16.0])
def test_gamma_has_asked_rate_and_cv_squared(burstiness: float):
    rate, n = 100.0, 50_000
    gaps_s = np.diff(take(gamma_offsets_ns(rate, burstiness, seed=5), n), prepend=0) / 1e9
    mean, cv2 = gaps_s.mean(), gaps_s.var() / gaps_s.mean() ** 2
    # se of the mean of gamma gaps = sd/sqrt(n) = sqrt(b)/rate/sqrt(n).
    assert abs(mean - 1 / rate) < 4 * math.sqrt(burstiness) / rate / math.sqrt(n)
    # The sample CV^2 of heavy-tailed gaps converges slowly: 10 % at b=16 over 50k gaps.
    assert abs(cv2 / burstiness - 1) < 0.1


def test_gamma_with_burstiness_one_is_exponential():
    rate, n = 80.0, 20_000
    gaps_s = np.diff(take(gamma_offsets_ns(rate, 1.0, seed=2), n), prepend=0) / 1e9
    assert ks_exponential(gaps_s, rate) < ks_critical(n)


def count_in(t_ns: np.ndarray, lo_s: float, hi_s: float) -> int:
    return int(((t_ns >= lo_s * 1e9) & (t_ns < hi_s * 1e9)).sum())


def assert_poisson_count(count: int, rate: float, span_s: float) -> None:
    expected = rate * span_s
    assert abs(count - expected) < 4 * math.sqrt(expected), (count, expected)


def test_step_profile_rates_before_and_after():
    t = until(thinned_offsets_ns(step_rate(50, 400, at_s=100), 400, seed=3), 200)
    assert_poisson_count(count_in(t, 0, 100), 50, 100)
    assert_poisson_count(count_in(t, 100, 200), 400, 100)
    # Thinning a Poisson stream keeps it Poisson: the gaps in each phase are exponential.
    before = np.diff(t[t < 100e9]) / 1e9
    assert ks_exponential(before, 50) < ks_critical(before.size)


def test_spike_profile_rates():
    t = until(thinned_offsets_ns(spike_rate(40, 500, at_s=50, duration_s=20), 500, seed=4), 120)
    assert_poisson_count(count_in(t, 0, 50), 40, 50)
    assert_poisson_count(count_in(t, 50, 70), 500, 20)
    assert_poisson_count(count_in(t, 70, 120), 40, 50)


def test_ramp_profile_integrates_the_linear_rate():
    rate = ramp_rate(100, 300, at_s=20, duration_s=40)
    t = until(thinned_offsets_ns(rate, 300, seed=6), 100)
    assert_poisson_count(count_in(t, 0, 20), 100, 20)
    # Over the ramp the expected count is the integral of the rate: mean 200 req/s x 40 s.
    assert_poisson_count(count_in(t, 20, 40), 150, 20)  # first half: 100 -> 200
    assert_poisson_count(count_in(t, 40, 60), 250, 20)  # second half: 200 -> 300
    assert_poisson_count(count_in(t, 60, 100), 300, 40)


def test_trace_replays_timestamps_and_payload_ids(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("timestamp_s,payload\n100.0,3\n100.5,1\n100.5,2\n102.25,0\n")
    trace = load_trace(path)
    assert trace.offsets_ns.tolist() == [0, 500_000_000, 500_000_000, 2_250_000_000]
    assert trace.payload_ids.tolist() == [3, 1, 2, 0]
    sched = schedule_for(WorkloadSpec(arrival=Arrival.TRACE, trace_path=str(path)), seed=0)
    assert list(sched.offsets_ns) == trace.offsets_ns.tolist()
    assert list(sched.payload_ids) == [3, 1, 2, 0]


def test_trace_without_payload_ids(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("0.0\n0.01\n0.02\n")
    trace = load_trace(path)
    assert trace.payload_ids is None and trace.offsets_ns.tolist() == [0, 10_000_000, 20_000_000]


@pytest.mark.parametrize(("text", "message"), [
    ("1.0\n0.5\n", "comes before the previous one"),
    ("1.0,1\n2.0\n", "have a payload id"),
    ("1.0\nabc\n", "line 2"),
    ("", "has no timestamps"),
])
def test_bad_trace_names_the_field_and_the_fix(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InferBenchError, match=message) as info:
        load_trace(path)
    assert "trace_path" in str(info.value) and "fix" in str(info.value)


def test_missing_trace_file():
    with pytest.raises(InferBenchError, match="trace_path '/nonexistent.csv' does not exist"):
        load_trace("/nonexistent.csv")


def test_partition_splits_a_poisson_stream_into_poisson_streams():
    rate, n, parts = 400.0, 40_000, 4
    full = take(poisson_offsets_ns(rate, 9), n)
    pieces = [np.fromiter(partition_offsets_ns(iter(full.tolist()), parts, k, seed=1), np.int64)
              for k in range(parts)]
    # Together exactly the logged stream, each arrival sent once.
    assert np.array_equal(np.sort(np.concatenate(pieces)), full)
    for piece in pieces:
        gaps_s = np.diff(piece, prepend=0) / 1e9
        assert ks_exponential(gaps_s, rate / parts) < ks_critical(gaps_s.size)


def test_schedule_for_poisson_is_the_legacy_stream():
    w = WorkloadSpec(arrival=Arrival.POISSON, rate_rps=40, seed=1)
    assert np.array_equal(take(schedule_for(w, 7).offsets_ns, 500),
                          take(poisson_offsets_ns(40, 7), 500))


@pytest.mark.parametrize("arrival", ["poisson", "gamma", "step", "spike", "ramp"])
def test_seed_reproduces_every_random_process(arrival: str):
    extra = {"gamma": {"burstiness": 3}, "step": {"peak_rate_rps": 90, "change_at_s": 1},
             "spike": {"peak_rate_rps": 90, "change_at_s": 1, "change_duration_s": 1},
             "ramp": {"peak_rate_rps": 90, "change_at_s": 1, "change_duration_s": 1}}
    w = WorkloadSpec(arrival=Arrival(arrival), rate_rps=30, **extra.get(arrival, {}))
    a, b, c = (take(schedule_for(w, s).offsets_ns, 300) for s in (5, 5, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(("fields", "message"), [
    ({"arrival": "gamma", "rate_rps": 10}, "arrival 'gamma' needs burstiness; fix: add"),
    ({"arrival": "step", "rate_rps": 10, "change_at_s": 3}, "needs peak_rate_rps"),
    ({"arrival": "poisson", "rate_rps": 10, "burstiness": 2},
     "burstiness 2.0 is only for arrival 'gamma'; fix: remove it"),
    ({"arrival": "trace", "trace_path": "t.csv", "rate_rps": 5}, "rate_rps 5.0 is only for"),
    ({"arrival": "spike", "rate_rps": 100, "peak_rate_rps": 10, "change_at_s": 1,
      "change_duration_s": 1}, "peak_rate_rps 10.0 is below rate_rps 100.0"),
])
def test_workload_errors_name_field_value_and_fix(fields, message):
    from inferbench.spec import example_spec, parse_spec

    data = example_spec().model_dump(mode="json")
    data["workload"] = fields
    with pytest.raises(InferBenchError, match=message):
        parse_spec(data)
