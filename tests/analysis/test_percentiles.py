"""Exact percentiles, order-statistic confidence bounds and HdrHistogram encoding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.percentiles import (
    PERCENTILES,
    exact_percentile,
    exact_percentiles,
    hdr_decode,
    hdr_encode,
    nearest_rank,
    p99_confidence_bounds,
    quantile_ci,
)

KEYS = ["mean", "p50", "p90", "p95", "p99", "p99.9", "max"]


def test_one_to_hundred_nearest_rank():
    values = np.random.default_rng(0).permutation(np.arange(1, 101, dtype=float))
    assert exact_percentiles(values) == {
        "mean": 50.5,
        "p50": 50.0,
        "p90": 90.0,
        "p95": 95.0,
        "p99": 99.0,
        "p99.9": 100.0,
        "max": 100.0,
    }
    assert list(exact_percentiles(values)) == KEYS
    assert PERCENTILES == (50.0, 90.0, 95.0, 99.0, 99.9)


def test_rank_is_exact_where_float_numpy_is_off_by_one():
    # 0.999 * 1000 is 999.0000000000001 in binary floating point, so numpy's
    # inverted_cdf picks rank 1000; nearest rank is ceil(999) = 999.
    values = np.arange(1, 1001, dtype=float)
    assert nearest_rank(1000, 99.9) == 999
    assert exact_percentiles(values)["p99.9"] == 999.0
    assert np.percentile(values, 99.9, method="inverted_cdf") == 1000.0  # the numpy pitfall
    assert nearest_rank(10_000, 99.9) == 9990
    assert nearest_rank(7, 50.0) == 4
    assert nearest_rank(10, 0.0) == 1


def test_never_interpolated():
    # Interpolation would give 5.5; nearest rank returns a measured value.
    assert exact_percentile(np.array([10.0, 1.0]), 50.0) == 1.0
    assert exact_percentile(np.array([10.0, 1.0]), 50.1) == 10.0
    assert exact_percentiles(np.array([3.25]))["p99.9"] == 3.25


def test_empty_gives_none_not_nan():
    assert exact_percentiles(np.array([])) == {k: None for k in KEYS}
    assert exact_percentile(np.array([]), 99.0) is None


def test_nan_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        exact_percentiles(np.array([1.0, np.nan]))


def test_median_bounds_textbook_case():
    # n = 10, median, 95 %: (x_(2), x_(9)) with coverage 1 - 2 * 11/1024.
    assert p99_confidence_bounds(10, 0.5, 0.95) == (2, 9)


def _binom_cdf(n: int, q: float, k: int) -> float:
    # 1 - upper tail: only terms near n are summed, so comb() stays within float range.
    return 1.0 - sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(k + 1, n + 1))


@pytest.mark.parametrize(
    ("n", "q", "expected"), [(1000, 0.99, (983, 997)), (5000, 0.999, (4990, 5000))]
)
def test_bounds_are_the_tightest_equal_tailed_ranks(n, q, expected):
    lo, hi = p99_confidence_bounds(n, q, 0.95)
    assert (lo, hi) == expected
    # Independent check by direct summation: each tail <= 2.5 %, and moving either
    # bound one rank inwards would break that.
    assert _binom_cdf(n, q, lo - 1) <= 0.025 < _binom_cdf(n, q, lo)
    assert 1 - _binom_cdf(n, q, hi - 1) <= 0.025 < 1 - _binom_cdf(n, q, hi - 2)


def test_too_few_samples_leave_a_side_unbounded():
    # 0.99**100 = 0.366 > 2.5 %: 100 samples cannot bound p99 from above.
    assert p99_confidence_bounds(100, 0.99) == (97, 101)
    assert quantile_ci(np.arange(1, 101, dtype=float), 0.99) == (97.0, None)
    assert p99_confidence_bounds(0) == (0, 1)
    assert quantile_ci(np.array([]), 0.99) == (None, None)
    assert quantile_ci(np.arange(1, 1001, dtype=float), 0.99) == (983.0, 997.0)


def test_bounds_reject_bad_arguments():
    with pytest.raises(ValueError):
        p99_confidence_bounds(10, q=1.0)
    with pytest.raises(ValueError):
        p99_confidence_bounds(10, confidence=0.0)


def test_hdr_round_trip_keeps_counts_and_precision():
    lat_us = np.array([1000] * 98 + [50_000, 0, 5_000_000_000])  # 0 us and > 1 h are clamped
    encoded = hdr_encode(lat_us)
    assert isinstance(encoded, str) and encoded.isascii()
    hist = hdr_decode(encoded)
    assert hist.get_total_count() == 101
    assert abs(hist.get_value_at_percentile(50) - 1000) <= 1
    assert hist.get_min_value() == 1
    assert hist.values_are_equivalent(hist.get_max_value(), 3_600_000_000)
    assert hdr_decode(hdr_encode(np.array([]))).get_total_count() == 0
