"""Latency CDF, capacity and throughput plots as small PNG files.

Uses matplotlib's object API with the Agg canvas directly (``Figure`` +
``FigureCanvasAgg``) instead of ``pyplot``: no global figure state, no backend
switching, safe in headless Airflow workers and threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    ax_cdf.set_prop_cycle(distinct_lines(len(series)))
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
        ax_tail.plot(nines, v[idx], drawstyle="steps-post", color=line.get_color(),
                     linestyle=line.get_linestyle())
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


def distinct_lines(n: int):
    """A property cycle giving `n` lines distinct looks: matplotlib's ten colours up to ten
    lines, tab20's twenty up to twenty, then each of those solid, dashed and dotted (a
    report of a dozen configurations must not draw two of them in one colour)."""
    from cycler import cycler
    from matplotlib import colormaps, rcParams

    if n <= 10:
        return rcParams["axes.prop_cycle"]
    colours = cycler(color=colormaps["tab20"].colors)
    return colours if n <= 20 else cycler(linestyle=["-", "--", ":"]) * colours


def _save(fig: Figure, path: Path, bottom: float = 0.0) -> Path:
    path = Path(path)
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _new(figsize=(8, 4)):
    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def kde_png(series: Mapping[str, np.ndarray], path: Path, *, title: str,
            slo_ms: float | None = None) -> Path:
    """Gaussian KDE of each labelled latency series, estimated over log10 of the latency
    and drawn on a log latency axis: configurations a hundred times apart stay legible on
    one plot (on a linear axis the fast ones are crammed against zero)."""
    from analysis.latency import gaussian_kde

    fig = _new()
    ax = fig.subplots()
    ax.set_prop_cycle(distinct_lines(len(series)))
    logs = {label: np.log10(np.asarray(v, dtype=np.float64)[np.asarray(v) > 0])
            for label, v in series.items()}
    finite = [v for v in logs.values() if v.size]
    if finite:
        lo = min(float(np.percentile(v, 0.5)) for v in finite)
        hi = max(float(np.percentile(v, 99.5)) for v in finite)
        pad = max(0.05, 0.1 * (hi - lo))
        grid = np.linspace(lo - pad, hi + pad, 400)
        for label, v in logs.items():
            if v.size:
                ax.plot(10 ** grid, gaussian_kde(v, grid), label=f"{label} (n={v.size})")
    if slo_ms is not None:
        ax.axvline(slo_ms, color="red", linestyle="--", linewidth=1, label=f"SLO {slo_ms:g} ms")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_PLAIN)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("density (per decade of latency)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.suptitle(title)
    return _save(fig, path)


def _scatter(ax, points: list[tuple[float, float]], **style) -> None:
    if points:
        ax.scatter(*zip(*points, strict=True), zorder=3, **style)


def capacity_png(families: Sequence[tuple[str, Any]], path: Path, *, percentile: float,
                 slo_ms: float) -> Path:
    """Per family, one marker per rung of its load ladder. Left: tail latency vs offered
    load (log axis: ladders are geometric); right: throughput vs tail latency. ``families``
    are ``(label, FamilyCapacity)`` (:mod:`analysis.capacity`). The SLO is the dashed red
    line; the capacity rung is a star; VALID rungs that do not hold are crosses, INVALID
    rungs hollow."""
    rows_of_legend = -(-(len(families) + 4) // 3)  # three labels a row, with the 4 keys
    fig = _new((11, 4 + 0.22 * rows_of_legend))
    ax_load, ax_tp = fig.subplots(1, 2)
    ax_load.set_prop_cycle(distinct_lines(len(families)))
    kinds = set()
    for label, fam in families:
        rungs = [r for r in fam.rungs if r.latency_ms is not None]
        if not rungs:
            continue
        kinds.add(fam.open_loop)
        (line,) = ax_load.plot([r.offered for r in rungs], [r.latency_ms for r in rungs],
                               label=label)
        color = line.get_color()
        ax_tp.plot([r.latency_ms for r in rungs], [r.achieved_rps for r in rungs], color=color,
                   linestyle=line.get_linestyle())
        for ax, xy in ((ax_load, lambda r: (r.offered, r.latency_ms)),
                       (ax_tp, lambda r: (r.latency_ms, r.achieved_rps))):
            _scatter(ax, [xy(r) for r in rungs if r.holds], s=30, color=color)
            _scatter(ax, [xy(r) for r in rungs if not r.holds and r.verdict == "VALID"],
                     s=60, marker="X", color=color)
            _scatter(ax, [xy(r) for r in rungs if r.verdict != "VALID"], s=60,
                     facecolors="white", edgecolors=color)
            if fam.capacity is not None and fam.capacity.latency_ms is not None:
                _scatter(ax, [xy(fam.capacity)], s=220, marker="*", color=color,
                         edgecolors="black", linewidths=0.8)
    ax_load.axhline(slo_ms, color="red", linestyle="--", linewidth=1,
                    label=f"SLO p{percentile:g} <= {slo_ms:g} ms")
    ax_tp.axvline(slo_ms, color="red", linestyle="--", linewidth=1)
    # Legend keys for the markers (drawn off the data).
    ax_load.scatter([], [], s=220, marker="*", color="grey", edgecolors="black",
                    label="capacity")
    ax_load.scatter([], [], s=60, marker="X", color="grey", label="rung fails")
    ax_load.scatter([], [], s=60, facecolors="white", edgecolors="grey", label="INVALID")
    unit = {frozenset({True}): "offered load (requests/s)",
            frozenset({False}): "offered load (clients)"}.get(
        frozenset(kinds), "offered load (requests/s or clients)")
    if kinds:  # ladders are geometric: equal steps on a log axis
        ax_load.set_xscale("log")
        ax_load.xaxis.set_major_formatter(_PLAIN)
    ax_load.set_xlabel(unit)
    ax_load.set_ylabel(f"p{percentile:g} latency (ms)")
    ax_tp.set_xlabel(f"p{percentile:g} latency (ms)")
    ax_tp.set_ylabel("achieved throughput (requests/s)")
    for ax in (ax_load, ax_tp):
        ax.grid(True, alpha=0.3)
    if not families:
        ax_load.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax_load.transAxes)
    # Below both panels: with a sweep's many families a legend inside hides the data.
    handles, labels = ax_load.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="x-small")
    fig.suptitle(f"Capacity at SLO: p{percentile:g} vs offered load; throughput vs "
                 f"p{percentile:g} (star: capacity)")
    return _save(fig, path, bottom=min(0.5, 0.22 * rows_of_legend / fig.get_figheight()))


def heat_map_png(hm, path: Path, *, title: str,
                 scale: tuple[float, float] | None = None) -> Path:
    """A :class:`analysis.heatmap.HeatMap` as an annotated image; `scale` (min, max) puts
    several maps of one metric on one colour scale."""
    fig = _new((6, 4.5))
    ax = fig.subplots()
    vmin, vmax = scale if scale is not None else (None, None)
    im = ax.imshow(hm.values, origin="lower", aspect="auto", cmap="viridis", vmin=vmin,
                   vmax=vmax)
    ax.set_xticks(range(len(hm.x_values)), [str(v) for v in hm.x_values])
    ax.set_yticks(range(len(hm.y_values)), [str(v) for v in hm.y_values])
    ax.set_xlabel(hm.x_name)
    ax.set_ylabel(hm.y_name)
    finite = hm.values[np.isfinite(hm.values)]
    lo, hi = scale if scale is not None else (
        (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0))
    mid = (lo + hi) / 2
    for i in range(hm.values.shape[0]):
        for j in range(hm.values.shape[1]):
            v = hm.values[i, j]
            # Dark text on viridis' bright (high) end, light text on its dark end.
            ax.text(j, i, "-" if np.isnan(v) else f"{v:.3g}", ha="center", va="center",
                    color="black" if np.isfinite(v) and v > mid else "white",
                    fontsize="small")
    fig.colorbar(im, ax=ax, label=hm.metric)
    fig.suptitle(title)
    return _save(fig, path)


def roofline_png(points: Sequence[tuple[str, float, float]], ceilings: Sequence[tuple],
                 path: Path, *, title: str = "Roofline") -> Path:
    """Roofline: ``points`` are (label, FLOPs/byte, attained GFLOP/s); ``ceilings`` are
    (name, peak GFLOP/s, bandwidth GB/s). Log-log."""
    fig = _new((8, 5))
    ax = fig.subplots()
    xs = [p[1] for p in points if p[1] > 0] or [1.0]
    lo, hi = min(xs + [0.01]) / 4, max(xs + [100.0]) * 4
    grid = np.geomspace(lo, hi, 200)
    for name, peak, bw in ceilings:
        ax.plot(grid, np.minimum(peak, bw * grid), linewidth=1, label=f"{name} "
                f"({peak:.0f} GFLOP/s, {bw:.0f} GB/s)")
    for label, intensity, attained in points:
        if intensity > 0 and attained > 0:
            ax.scatter([intensity], [attained], marker="x", s=60, zorder=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("GFLOP/s")
    ax.grid(True, which="both", alpha=0.3)
    # Below the plot: inside, the legend covers the ceilings it names.
    handles, labels = ax.get_legend_handles_labels()
    rows = -(-len(labels) // 2)
    fig.set_figheight(5 + 0.22 * rows)
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize="x-small")
    fig.suptitle(title)
    return _save(fig, path, bottom=min(0.5, 0.22 * rows / fig.get_figheight() + 0.02))


def prediction_png(measured: Sequence[tuple[float, float | None, float | None]],
                   predicted: Sequence[tuple[float, float | None, float | None]], path: Path,
                   *, title: str, capacity_rps: float | None = None,
                   slo_ms: float | None = None, percentile: float | None = None) -> Path:
    """Latency vs offered Poisson rate: ``measured`` (rate, mean, p99) per rung as markers,
    ``predicted`` (rate, mean, p99) as lines (a queueing model's curve, analysis/
    prediction.py). The model's capacity is a dotted vertical line, the SLO a dashed red
    one. Latency on a log axis: near capacity the queue grows by orders of magnitude."""
    fig = _new((8, 4.5))
    ax = fig.subplots()
    styles = (("mean", "tab:blue", "o"), ("p99", "tab:orange", "^"))
    for i, (name, color, marker) in enumerate(styles, start=1):
        line = [(row[0], row[i]) for row in predicted if row[i] is not None]
        if line:
            ax.plot(*zip(*line, strict=True), color=color, linewidth=1.5,
                    linestyle="-" if i == 1 else "--", label=f"predicted {name}")
        points = [(row[0], row[i]) for row in measured if row[i] is not None and row[i] > 0]
        _scatter(ax, points, s=40, marker=marker, color=color, edgecolors="black",
                 linewidths=0.5, label=f"measured {name}")
    if capacity_rps is not None:
        ax.axvline(capacity_rps, color="grey", linestyle=":", linewidth=1,
                   label=f"model capacity {capacity_rps:.4g} req/s")
    if slo_ms is not None:
        ax.axhline(slo_ms, color="red", linestyle="--", linewidth=1,
                   label="SLO " + (f"p{percentile:g} " if percentile is not None else "")
                   + f"<= {slo_ms:g} ms")
    if measured or predicted:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_PLAIN)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(left=0.0)
    ax.set_xlabel("offered load (Poisson requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small", loc="upper left")
    fig.suptitle(title)
    return _save(fig, path)


def utilisation_png(series: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                    path: Path, *, title: str) -> Path:
    """CPU % over time, one small panel per configuration (its server and client, and GPU
    utilisation where sampled): a panel each keeps a dozen configurations readable."""
    n = max(1, len(series))
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig = _new(figsize=(8, 2.2 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    for ax, (label, by_source) in zip(axes, series.items(), strict=False):
        for source, (t_s, values) in sorted(by_source.items()):
            ax.plot(t_s, values, linewidth=1, label=source)
        ax.set_title(label, fontsize="small")
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("s since the configuration's first sample", fontsize="x-small")
    for ax in axes[len(series):]:
        ax.set_visible(False)
    axes[0].set_ylabel("CPU % (of one core) / GPU %", fontsize="x-small")
    # One legend for all panels (the sources are the same), below them: a legend inside a
    # panel covers its lines.
    by_label = {}
    for ax in axes[:len(series)]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            by_label.setdefault(label, handle)
    fig.legend(list(by_label.values()), list(by_label), loc="lower center",
               ncol=max(1, len(by_label)), fontsize="x-small")
    fig.suptitle(title)
    return _save(fig, path, bottom=0.35 / fig.get_figheight())


# A split whose parts add up past this share of its mean is not drawn (latency_split_png).
SPLIT_DRAWN_MAX = 1.1


def latency_split_png(rows: Sequence[tuple[str, Any]], path: Path, *,
                      title: str = "Where the mean latency goes") -> Path:
    """Stacked horizontal bars, one per `(label, LatencySplit)`: each measured part of the
    mean latency in the order a request meets it (analysis.server_split.PARTS), then the
    rest. Parts a point did not measure are left out of its bar, never drawn as zero. A
    point whose parts add up to more than SPLIT_DRAWN_MAX of its mean (an overloaded link,
    where waits of requests that never came back count) is named under the axis instead of
    drawn, so it does not squash the others' bars."""
    from analysis.server_split import PARTS

    names = [name for name, _ in PARTS] + ["rest"]
    drawn = [(label, split) for label, split in rows if split.measured_share <= SPLIT_DRAWN_MAX]
    left_out = [label for label, split in rows if split.measured_share > SPLIT_DRAWN_MAX]
    fig = _new((8, max(2.5, 0.4 * len(drawn) + 2.2)))
    ax = fig.subplots()
    y = np.arange(len(drawn))
    left = np.zeros(len(drawn))
    colours = dict(zip(names, ("tab:olive", "tab:pink", "tab:red", "tab:blue", "tab:brown",
                               "tab:orange", "tab:green", "tab:purple", "lightsteelblue",
                               "tab:cyan", "tab:gray"), strict=True))
    for name in names:
        widths = np.array([(split.rest_ms if name == "rest" else split.known_ms()[name]) or 0.0
                           for _, split in drawn])
        if widths.any():
            ax.barh(y, widths, left=left, label=name, color=colours[name])
            left += widths
    ax.set_yticks(y, [label for label, _ in drawn])
    ax.invert_yaxis()
    ax.set_xlabel("mean latency (ms)" + (f"\nnot drawn (parts add up to more than "
                                          f"{SPLIT_DRAWN_MAX:.0%} of the mean): "
                                          + ", ".join(left_out) if left_out else ""))
    ax.grid(True, axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize="x-small")
    fig.suptitle(title)
    return _save(fig, path, bottom=0.6 / fig.get_figheight())

