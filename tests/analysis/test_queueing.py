"""The M/D/c formulas against closed forms and against the queue itself (a seeded sample
path through the FIFO recursion start_n = max(arrival_n, start_{n-c} + D))."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import queueing
from analysis.queueing import (
    cosmetatos_factor,
    erlang_c,
    heavy_traffic_wait_grid,
    mdc_mean_wait_ms,
    mdc_wait_grid,
    mdc_wait_quantile_ms,
    mmc_mean_wait_ms,
    quantile_from_grid,
)


def sample_path_waits(lam: float, service_ms: float, c: int, n: int = 300_000,
                      seed: int = 7) -> np.ndarray:
    """Waits of a simulated M/D/c FIFO queue (first tenth dropped as warm-up)."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / lam, n)).tolist()
    start = [0.0] * n
    for i, a in enumerate(arrival):
        start[i] = a if i < c else max(a, start[i - c] + service_ms)
    return (np.array(start) - np.array(arrival))[n // 10:]


def test_erlang_c_matches_its_textbook_values():
    # M/M/1: the probability of waiting is rho; M/M/2 with a = 1: 1/3.
    assert erlang_c(1, 0.6) == pytest.approx(0.6)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


@pytest.mark.parametrize("rho", [0.3, 0.7, 0.9])
def test_md1_mean_wait_is_pollaczek_khinchine(rho):
    d = 5.0
    exact = rho * d / (2 * (1 - rho))
    assert mdc_mean_wait_ms(rho / d, d, 1) == pytest.approx(exact, rel=1e-9)
    # Cosmetatos' correction is exactly 1/2 of M/M/1 for one worker.
    assert cosmetatos_factor(1, rho) * mmc_mean_wait_ms(rho / d, d, 1) == \
        pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("c", [2, 4])
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_mdc_grid_law_and_root_formula_agree(c, rho):
    lam = rho * c / 5.0
    h, law = mdc_wait_grid(lam, 5.0, c)
    assert law.sum() == pytest.approx(1.0)
    grid_mean = float(np.dot(np.arange(law.size) * h, law))
    assert grid_mean == pytest.approx(mdc_mean_wait_ms(lam, 5.0, c), rel=2e-3)


@pytest.mark.parametrize("c,rho", [(1, 0.8), (2, 0.7), (4, 0.9)])
def test_mdc_mean_and_p99_match_the_simulated_queue(c, rho):
    lam, d = rho * c / 5.0, 5.0
    waits = sample_path_waits(lam, d, c)
    # The sample path's own spread: a few percent at these loads and this length.
    assert mdc_mean_wait_ms(lam, d, c) == pytest.approx(waits.mean(), rel=0.05)
    assert mdc_wait_quantile_ms(lam, d, c, 0.99) == pytest.approx(np.quantile(waits, 0.99),
                                                                  rel=0.05)


@pytest.mark.parametrize("c,rho", [(1, 0.99999), (4, 0.999)])
def test_near_saturation_the_wait_law_is_the_heavy_traffic_one_with_the_exact_mean(c, rho):
    lam = rho * c / 5.0
    h, law = mdc_wait_grid(lam, 5.0, c)
    # The Lindley grid would need 1 / (1 - rho) cells (and as many slow steps) here.
    assert law.size <= queueing._GRID_MAX_CELLS
    assert law.sum() == pytest.approx(1.0)
    # Cell i holds ((i - 1) h, i h]: its midpoint carries the mean.
    grid_mean = float(np.dot(np.maximum(np.arange(law.size) - 0.5, 0) * h, law))
    assert grid_mean == pytest.approx(mdc_mean_wait_ms(lam, 5.0, c), rel=0.01)


@pytest.mark.parametrize("c,rho", [(1, 0.93), (2, 0.97), (4, 0.98)])
def test_heavy_traffic_law_agrees_with_the_grid_where_they_meet(c, rho):
    lam = rho * c / 5.0
    h, law = mdc_wait_grid(lam, 5.0, c)
    assert law.size <= queueing._GRID_MAX_CELLS  # still the Lindley grid
    h_ht, law_ht = heavy_traffic_wait_grid(mdc_mean_wait_ms(lam, 5.0, c),
                                           erlang_c(c, lam * 5.0))
    assert quantile_from_grid(h_ht, law_ht, 0.99) == \
        pytest.approx(quantile_from_grid(h, law, 0.99), rel=0.02)


def test_cosmetatos_is_close_to_the_exact_mean():
    for c in (2, 4):
        for rho in (0.3, 0.9):
            lam = rho * c / 5.0
            approx = cosmetatos_factor(c, rho) * mmc_mean_wait_ms(lam, 5.0, c)
            exact = mdc_mean_wait_ms(lam, 5.0, c)
            # Relative to the response time (wait + D), which is what is predicted.
            assert abs(approx - exact) / (exact + 5.0) < 0.01


def test_a_saturated_queue_has_no_steady_state():
    with pytest.raises(ValueError, match="utilisation 1.0000 >= 1"):
        mdc_mean_wait_ms(0.2, 5.0, 1)
