"""Predictability figures (analysis/predictability.py) on records built by hand."""

from __future__ import annotations

import numpy as np

from analysis.predictability import (
    latency_spread,
    point_predictability,
    requests_needed,
)


def _records(latency_ms, status=None):
    latency_ms = np.asarray(latency_ms, dtype=float)
    n = latency_ms.size
    return {"status": np.asarray(status if status is not None else [200] * n),
            "scheduled_ns": np.zeros(n, np.int64),
            "done_ns": (latency_ms * 1e6).astype(np.int64)}


def test_requests_needed_for_an_upper_bound_on_the_far_tail():
    # 0.999^n <= 0.025 first at n = 3,688; 0.9999^n at 36,887.
    assert requests_needed(99.9) == 3688
    assert requests_needed(99.99) == 36887
    assert 0.999 ** 3688 <= 0.025 < 0.999 ** 3687


def test_slo_attainment_counts_failures_as_misses_and_goodput_per_second():
    p = point_predictability(_records([5, 10, 20, 40], status=[200, 200, 200, 500]),
                             slo_ms=15, duration_s=2.0)
    assert p["n_sent"] == 4 and p["n_ok"] == 3
    assert p["slo_attainment_pct"] == 50.0 and p["goodput_rps"] == 1.0
    assert p["p99.9"] == {"ms": None, "ci_ms": (None, None), "requests_needed": 3688}


def test_the_far_tail_is_given_with_its_bounds_once_there_are_enough_requests():
    latency = np.arange(1, 5001, dtype=float)  # 1..5000 ms
    p = point_predictability(_records(latency), slo_ms=10_000, duration_s=10)
    tail = p["p99.9"]
    assert tail["ms"] == 4995.0  # rank ceil(0.999 * 5000) = 4995
    lo, hi = tail["ci_ms"]
    assert lo < 4995 < hi <= 5000
    assert p["p99.99"]["ms"] is None  # 5,000 < 36,887


def test_spread_of_a_steady_and_a_jittery_server():
    steady = latency_spread(_records([10.0] * 50))
    assert steady["cv"] == 0.0 and steady["max_over_median"] == 1.0
    jittery = latency_spread(_records([10.0] * 49 + [50.0]))
    assert jittery["max_over_median"] == 5.0 and jittery["cv"] > 0.5
    assert latency_spread(_records([3.0]))["cv"] is None


def test_utilisation_of_a_point_is_its_window_only():
    from analysis.utilisation import point_utilisation

    samples = [{"source": "server", "t_ns": t, "cpu_pct": cpu, "rss_bytes": rss}
               for t, cpu, rss in ((0, 10.0, 100), (5, 50.0, 300), (9, 90.0, 200),
                                   (20, 99.0, 999))]
    samples.append({"source": "client", "t_ns": 6, "cpu_pct": 30.0, "rss_bytes": None})
    u = point_utilisation(samples, started_ns=5, ended_ns=10)
    assert u["server"]["n_samples"] == 2 and u["server"]["cpu_pct_mean"] == 70.0
    assert u["server"]["cpu_pct_max"] == 90.0 and u["server"]["rss_bytes_max"] == 300
    assert u["client"]["rss_bytes_max"] is None and u["server"]["gpu_util_pct_mean"] is None
