"""Latency distributions and load curves: CDFs, KDEs, tail latency against offered load,
throughput against latency, and the throughput a configuration sustains within an SLO.

Pure functions over arrays and point records (see :mod:`analysis.points`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.points import config_key, group_by, labeller, latency_at, offered_load


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


@dataclass(frozen=True)
class CurvePoint:
    """One point of a load curve of one configuration."""

    offered_load: float
    throughput_rps: float
    latency_ms: float | None
    verdict: str
    run_id: str | None


def load_curves(rows: Iterable[Mapping[str, Any]],
                percentile: float) -> dict[str, list[CurvePoint]]:
    """Per configuration (label without the load), its points ordered by offered load, with
    the latency at ``percentile``: tail latency vs offered load and throughput vs latency
    are both read from these curves."""
    rows = list(rows)
    config_label = labeller(rows)
    curves: dict[str, list[CurvePoint]] = {}
    for _key, group in group_by(rows, config_key).items():
        pts = [CurvePoint(offered_load(r), float(r["throughput_rps"]),
                          latency_at(r, percentile), r["verdict"], r.get("run_id"))
               for r in group if offered_load(r) is not None]
        if pts:
            curves[config_label(group[0])] = sorted(pts, key=lambda p: p.offered_load)
    return curves


def throughput_at_slo(rows: Iterable[Mapping[str, Any]], percentile: float,
                      slo_ms: float) -> dict[str, Mapping[str, Any] | None]:
    """Per configuration, the point at the highest offered load that is VALID and whose
    latency at ``percentile`` is within ``slo_ms`` (None if no point qualifies).

    Ties on the load (repeated runs) go to the higher measured throughput.
    """
    rows = list(rows)
    config_label = labeller(rows)
    out: dict[str, Mapping[str, Any] | None] = {}
    for _key, group in group_by(rows, config_key).items():
        ok = [r for r in group if r["verdict"] == "VALID" and offered_load(r) is not None
              and (lat := latency_at(r, percentile)) is not None and lat <= slo_ms]
        out[config_label(group[0])] = max(
            ok, key=lambda r: (offered_load(r), float(r["throughput_rps"])), default=None)
    return out
