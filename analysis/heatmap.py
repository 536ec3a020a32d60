"""Heat maps of a metric over two hyper-parameters, the others fixed (runs of one sweep)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def param(row: Mapping[str, Any], name: str) -> Any:
    """A hyper-parameter of a point: a point field (batch_size, target_rate_rps, platform...)
    or one of the generator's hyper-parameters (depth, width, ...)."""
    if name in row and row[name] is not None:
        return row[name]
    value = (row.get("hyperparams") or {}).get(name)
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class HeatMap:
    x_name: str
    y_name: str
    metric: str
    x_values: list[Any]
    y_values: list[Any]
    values: np.ndarray  # shape (len(y_values), len(x_values)); NaN where nothing was measured
    fixed: dict[str, Any]


def heat_map(rows: Iterable[Mapping[str, Any]], x: str, y: str, metric, *,
             metric_name: str, fixed: Mapping[str, Any] | None = None,
             vary_free: tuple[str, ...] = ()) -> HeatMap:
    """Pivot ``metric(row)`` over the ``x`` and ``y`` hyper-parameters.

    Rows must match ``fixed`` (name -> value). Hyper-parameters in ``vary_free`` that are not
    fixed are set to their most common value (so "the others fixed" holds without listing
    them). Several rows in one cell (repeats) are averaged.
    """
    rows = [r for r in rows if all(param(r, k) == v for k, v in (fixed or {}).items())]
    fixed = dict(fixed or {})
    for name in vary_free:
        if name in (x, y) or name in fixed:
            continue
        counts = Counter(param(r, name) for r in rows)
        if counts and set(counts) != {None}:  # a parameter no row has is not "fixed"
            fixed[name] = counts.most_common(1)[0][0]
            rows = [r for r in rows if param(r, name) == fixed[name]]
    xs = sorted({param(r, x) for r in rows}, key=_order)
    ys = sorted({param(r, y) for r in rows}, key=_order)
    sums = np.zeros((len(ys), len(xs)))
    counts = np.zeros((len(ys), len(xs)))
    for r in rows:
        value = metric(r)
        if value is None:
            continue
        i, j = ys.index(param(r, y)), xs.index(param(r, x))
        sums[i, j] += float(value)
        counts[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return HeatMap(x, y, metric_name, xs, ys, values, fixed)


def _order(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))
