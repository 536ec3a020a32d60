"""Latency CDF and throughput plots as small PNG files.

Uses matplotlib's object API with the Agg canvas directly (``Figure`` +
``FigureCanvasAgg``) instead of ``pyplot``: no global figure state, no backend
switching, safe in headless Airflow workers and threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

DPI = 100
# Beyond this many points per series the curves are thinned (the tail is kept
# point by point): a million-request step plot is slow and looks the same.
_MAX_PLOT_POINTS = 4000
_NINES = (2, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
_NINES_LABELS = ("50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%")
# "2", "10", "0.5" on log axes instead of 10^0 notation.
_PLAIN = FuncFormatter(lambda value, _pos: f"{value:g}")


def _plot_indices(n: int) -> np.ndarray:
    """Sorted-array indices to draw: all if few, else evenly spaced + dense in the tail."""
    if n <= _MAX_PLOT_POINTS:
        return np.arange(n)
    body = np.linspace(0, n - 1, _MAX_PLOT_POINTS // 2).astype(np.int64)
    # Distance from the max on a log scale, so p99.9 .. max stay resolved.
    tail = n - np.geomspace(1, n, _MAX_PLOT_POINTS // 2).astype(np.int64)
    return np.unique(np.clip(np.concatenate([body, tail, [0, n - 1]]), 0, n - 1))


def latency_cdf_png(
    series: Mapping[str, np.ndarray],
    path: Path,
    *,
    title: str,
    slo_ms: float | None = None,
) -> Path:
    """Plot the empirical latency CDF of each labelled series (ms) into a PNG.

    Left panel: CDF, log-scaled latency (ms) on x, fraction 0..1 on y.  Right
    panel: the tail, latency against the percentile on a "nines" axis
    (1 / (1 - q): 90 %, 99 %, 99.9 % ... equally spaced), in the style of
    HdrHistogram percentile plots.  ``slo_ms`` is drawn as a dashed line on both.
    Non-positive latencies are clipped to the smallest positive one (log axis).
    Returns ``path``.
    """
    path = Path(path)
    fig = Figure(figsize=(10, 4), dpi=DPI)
    FigureCanvasAgg(fig)
    ax_cdf, ax_tail = fig.subplots(1, 2)
    max_nines = 2
    any_data = False
    for label, values in series.items():
        v = np.sort(np.asarray(values, dtype=np.float64).ravel())
        v = v[np.isfinite(v)]
        n = v.size
        if n == 0:
            ax_cdf.plot([], [], label=f"{label} (no data)")
            continue
        any_data = True
        pos = v[v > 0]
        v = np.maximum(v, pos[0] if pos.size else 1e-3)
        idx = _plot_indices(n)
        # Nearest rank: v[i] is the quantile for q in (i/n, (i+1)/n].
        # The CDF is 0 left of the smallest value, then jumps to (i+1)/n at v[i].
        x = np.concatenate([v[:1], v[idx]])
        y = np.concatenate([[0.0], (idx + 1) / n])
        (line,) = ax_cdf.plot(x, y, drawstyle="steps-post", label=f"{label} (n={n})")
        # Tail: v[i] holds from q = i/n, i.e. from 1/(1-q) = n/(n-i).
        nines = n / (n - idx)
        ax_tail.plot(nines, v[idx], drawstyle="steps-post", color=line.get_color())
        max_nines = max(max_nines, n)

    ax_cdf.set_xscale("log")
    ax_cdf.set_ylim(0.0, 1.0)
    ax_cdf.xaxis.set_major_formatter(_PLAIN)
    ax_cdf.set_xlabel("latency (ms)")
    ax_cdf.set_ylabel("fraction of requests")
    ax_cdf.grid(True, which="both", alpha=0.3)

    ax_tail.set_xscale("log")
    ax_tail.set_yscale("log")
    ticks = [t for t in _NINES if t <= max_nines * 1.0001]
    ax_tail.xaxis.set_major_locator(FixedLocator(ticks))
    ax_tail.xaxis.set_minor_locator(NullLocator())
    ax_tail.set_xticklabels(_NINES_LABELS[: len(ticks)])
    ax_tail.set_xlim(1, max(max_nines, 2))
    ax_tail.set_xlabel("percentile")
    ax_tail.yaxis.set_major_formatter(_PLAIN)
    ax_tail.set_ylabel("latency (ms)")
    ax_tail.grid(True, which="both", alpha=0.3)

    if slo_ms is not None:
        ax_cdf.axvline(slo_ms, color="red", linestyle="--", linewidth=1, label=f"SLO {slo_ms:g} ms")
        ax_tail.axhline(slo_ms, color="red", linestyle="--", linewidth=1)
    if not any_data:
        ax_cdf.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax_cdf.transAxes)
    if series or slo_ms is not None:
        ax_cdf.legend(loc="lower right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def throughput_bar_png(
    rows: Sequence[tuple[str, float]],
    path: Path,
    *,
    title: str = "Throughput",
) -> Path:
    """Horizontal bar chart of ``(label, throughput_rps)`` rows into a PNG; returns ``path``."""
    path = Path(path)
    height = max(2.0, 0.35 * len(rows) + 1.2)
    fig = Figure(figsize=(8, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    labels = [label for label, _ in rows]
    values = [float(v) for _, v in rows]
    y = np.arange(len(rows))
    ax.barh(y, values)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()  # first row on top, as in the results table
    ax.set_xlabel("throughput (requests/s)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path
