"""Latency distributions: CDFs and KDEs. Pure functions over arrays.

Load curves (tail latency against offered load, throughput against latency) and what a
configuration sustains within an SLO are the rungs and the capacity of a family:
:mod:`analysis.capacity`.
"""

from __future__ import annotations

import numpy as np


def ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF: sorted finite values and F(x_i) = i/n (i = 1..n)."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    v = v[np.isfinite(v)]
    return v, np.arange(1, v.size + 1) / max(v.size, 1)


def silverman_bandwidth(values: np.ndarray) -> float:
    """Silverman's rule of thumb: 0.9 * min(sd, IQR/1.34) * n^(-1/5); sd if IQR is 0.

    Returns 0.0 for fewer than 2 values or no spread (the KDE then is a spike).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2:
        return 0.0
    sd = float(np.std(v, ddof=1))
    q75, q25 = np.percentile(v, [75, 25])
    iqr = float(q75 - q25) / 1.34
    spread = min(sd, iqr) if iqr > 0 else sd
    return 0.9 * spread * v.size ** (-0.2)


def gaussian_kde(values: np.ndarray, grid: np.ndarray,
                 bandwidth: float | None = None) -> np.ndarray:
    """Gaussian kernel density of ``values`` evaluated on ``grid`` (integrates to 1).

    Own implementation, so the analyses need only numpy (scipy is installed only with the
    optional `quality` extra, through Great Expectations): mean over samples of
    N(grid; x_i, h^2). ``bandwidth`` defaults to :func:`silverman_bandwidth`. Evaluated in
    chunks so a million requests do not need a million x grid matrix at once.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    grid = np.asarray(grid, dtype=np.float64)
    h = silverman_bandwidth(v) if bandwidth is None else float(bandwidth)
    if v.size == 0 or h <= 0:
        return np.zeros_like(grid)
    density = np.zeros_like(grid)
    norm = 1.0 / (v.size * h * np.sqrt(2 * np.pi))
    for start in range(0, v.size, 4096):
        z = (grid[:, None] - v[None, start:start + 4096]) / h
        density += np.exp(-0.5 * z * z).sum(axis=1)
    return density * norm
