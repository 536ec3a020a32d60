"""Open-loop Poisson arrivals: right rate, exponential gaps, reproducible from the seed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from inferbench.load.arrivals import poisson_offsets_ns


def offsets(rate: float, seed: int, n: int) -> np.ndarray:
    return np.fromiter(itertools.islice(poisson_offsets_ns(rate, seed), n), dtype=np.int64)


def test_rate_and_exponential_gaps():
    rate, n = 200.0, 20_000
    t = offsets(rate, seed=7, n=n)
    gaps_s = np.diff(t, prepend=0) / 1e9
    assert np.all(gaps_s > 0)
    # Mean gap 1/rate within 3 standard errors (sd of an exponential = its mean).
    assert abs(gaps_s.mean() - 1 / rate) < 3 * (1 / rate) / np.sqrt(n)
    # Coefficient of variation of an exponential is 1.
    assert abs(gaps_s.std() / gaps_s.mean() - 1) < 0.05
    # Memorylessness: P(gap > 2/rate) = e^-2.
    assert abs((gaps_s > 2 / rate).mean() - np.exp(-2)) < 0.01


def test_seed_reproduces_schedule():
    assert np.array_equal(offsets(50, 3, 100), offsets(50, 3, 100))
    assert not np.array_equal(offsets(50, 3, 100), offsets(50, 4, 100))


def test_rejects_non_positive_rate():
    with pytest.raises(ValueError, match="rate_rps must be > 0"):
        next(poisson_offsets_ns(0, 1))
