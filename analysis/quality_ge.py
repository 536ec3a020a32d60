"""The data-quality expectations of :mod:`analysis.quality` as a Great Expectations suite.

Used by the analyze stage when ``great_expectations`` is installed (extra ``quality``);
otherwise the pure-function twin in analysis/quality.py runs. A test checks both judge the
same inputs the same way. Two in-memory tables are validated: one row per request
(``label``, ``latency_ms``) and one row per point (percentiles, rates, counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from analysis.quality import DEFAULT_RATE_TOLERANCE, PERCENTILE_ORDER

SUITE_NAME = "inferbench_point_measurements"


def available() -> bool:
    try:
        import great_expectations  # noqa: F401
    except ImportError:
        return False
    return True


def _frames(points: list[Mapping[str, Any]], tolerance: float):
    import pandas as pd

    requests = pd.DataFrame({
        "label": np.concatenate([[p["label"]] * len(p["latencies_ms"]) for p in points])
        if points else [],
        "latency_ms": np.concatenate([np.asarray(p["latencies_ms"], dtype=np.float64)
                                      for p in points]) if points else []})
    rows = []
    for p in points:
        lat = p["latency_ms"]
        rows.append({"label": p["label"], **{k: lat.get(k) for k in PERCENTILE_ORDER},
                     "throughput_rps": p["throughput_rps"],
                     "offered_limit_rps": None if p.get("target_rate_rps") is None
                     else p["target_rate_rps"] * (1 + tolerance),
                     "n_ok": p["n_ok"], "n_failed": p["n_failed"],
                     "n_total": p["n_ok"] + p["n_failed"], "n_requests": p["n_requests"]})
    return requests, pd.DataFrame(rows)


def _point_expectations(gx, present: list[str]) -> list:
    exp = gx.expectations
    out = [exp.ExpectColumnValuesToBeBetween(column=c, min_value=0)
           for c in ("n_ok", "n_failed")]
    out += [exp.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=b, column_B=a, or_equal=True, ignore_row_if="either_value_is_missing")
        for a, b in zip(present, present[1:], strict=False)]
    out.append(exp.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A="offered_limit_rps", column_B="throughput_rps", or_equal=True,
        ignore_row_if="either_value_is_missing"))
    out.append(exp.ExpectColumnPairValuesToBeEqual(column_A="n_total", column_B="n_requests"))
    return out


def _describe(result, frame) -> str:
    cfg = result.expectation_config
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}
    idx = (result.result or {}).get("partial_unexpected_index_list") or []
    labels = [str(frame["label"].iloc[i]) for i in idx if isinstance(i, int)]
    count = (result.result or {}).get("unexpected_count")
    return (f"{cfg.type} {kwargs} failed: {count} unexpected"
            + (f" (points: {', '.join(sorted(set(labels)))})" if labels else ""))


def validate_run_ge(points: Iterable[Mapping[str, Any]],
                    tolerance: float = DEFAULT_RATE_TOLERANCE) -> tuple[bool, list[str]]:
    """Validate with Great Expectations (ephemeral context, nothing written to disk).
    Same input as :func:`analysis.quality.validate_run`; returns (passed, reasons)."""
    import os

    # No usage analytics from a benchmark worker (and no network to send them to).
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    points = list(points)
    requests, per_point = _frames(points, tolerance)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm in logs
    source = context.data_sources.add_pandas("inferbench")
    reasons: list[str] = []
    present = [c for c in PERCENTILE_ORDER if per_point.get(c) is not None
               and per_point[c].notna().any()] if len(per_point) else []
    for name, frame, expectations in (
            ("requests", requests,
             [gx.expectations.ExpectColumnValuesToBeBetween(column="latency_ms", min_value=0)]),
            ("points", per_point, _point_expectations(gx, present))):
        if not len(frame):
            continue
        batch = (source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
                 .get_batch(batch_parameters={"dataframe": frame}))
        suite = gx.ExpectationSuite(name=f"{SUITE_NAME}_{name}", expectations=expectations)
        outcome = batch.validate(suite, result_format={"result_format": "COMPLETE"})
        reasons += [_describe(r, frame) for r in outcome.results if not r.success]
    return not reasons, reasons
