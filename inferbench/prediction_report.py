"""The report's "Predicted vs measured" section and the summary's per-family prediction:
the queueing model each family's load stage stored (table family_predictions), recomputed
from its profile, against the rungs that were measured."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inferbench.reporting import _table

if TYPE_CHECKING:
    from analysis.prediction import Prediction

# The predicted curve drawn against the measured rungs: Poisson rates from 5 % to 95 % of the
# model's capacity (near rho = 1 the queue has no steady state to compare with).
CURVE_FROM, CURVE_TO, CURVE_POINTS = 0.05, 0.95, 25


def stored_prediction(row: Mapping[str, Any]) -> Prediction:
    """The prediction of a `family_predictions` row, recomputed from its profile's levels
    as the load stage computed it (same parallelism, approximation and batching)."""
    from analysis.prediction import Level, predict

    model = row.get("model") or {}
    return predict([Level.from_dict(level) for level in row["levels"]],
                   int(row["parallelism"]),
                   approximation=model.get("approximation") or "exact",
                   dynamic_batching=bool(row.get("dynamic_batching")))


def error_pct(predicted: float | None, measured: float | None) -> float | None:
    """(predicted - measured) / measured, in percent; None where either is missing."""
    if predicted is None or measured is None or not measured:
        return None
    return 100.0 * (predicted - measured) / measured


def _pct_text(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def _prediction_part(index: int, label: str, family, row: Mapping[str, Any],
                     out_dir: Path, *, slo_percentile: float, slo_ms: float
                     ) -> dict[str, Any]:
    """One family's "predicted vs measured": the model, its caveats, the plot of latency
    vs offered Poisson rate and the table per rung."""
    from analysis import plots
    from analysis.points import latency_at
    from analysis.prediction import BEYOND_PROBES_NOTE

    model = row.get("model") or {}
    caveats = [f"Caveat: {c}" for c in model.get("caveats") or []]
    head = {"id": f"prediction-{index}", "title": label}
    reason = row.get("unmodelled")
    prediction = None
    if not reason:
        try:
            prediction = stored_prediction(row)
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"the stored profile cannot be recomputed: {exc}"
        else:
            reason = prediction.model.unmodelled
    if reason or prediction is None:
        return {**head, "notes": [f"Not modelled: {reason}", *caveats]}
    fitted = prediction.model
    capacity = fitted.capacity_rps
    each_ms = fitted.at_rate(capacity).service_ms[-1]  # the service at that load
    within = row.get("slo_capacity_rps")
    start = row.get("guided_start")
    profile_s = row.get("profile_s")
    notes = [f"Model: {row.get('model_name') or fitted.name}.",
             f"Capacity {capacity:.4g} req/s ({fitted.parallelism} at once, "
             f"{each_ms:.3g} ms each); predicted within p{slo_percentile:g} <= "
             f"{slo_ms:g} ms up to "
             + ("no rate" if within is None else f"{within:.4g} req/s")
             + "; the search started "
             + ("unguided" if start is None else f"at {start:.4g} req/s")
             + ("" if profile_s is None else f"; the profile took {profile_s:.1f} s") + ".",
             *caveats]
    if fitted.open_loop_factors:
        last = fitted.open_loop_factors[-1][0]
        beyond = BEYOND_PROBES_NOTE.format(rate=last)
        notes.append(f"{beyond[0].upper()}{beyond[1:]}.")
    rungs = [r for r in family.rungs if r.row.get("arrival") == "poisson"]
    measured, table = [], []
    for r in rungs:
        mean = (r.row.get("latency_ms") or {}).get("mean")
        p99 = latency_at(r.row, 99.0)
        pred_mean, pred_p99 = r.row.get("predicted_mean_ms"), r.row.get("predicted_p99_ms")
        if pred_mean is None and pred_p99 is None and r.offered <= CURVE_TO * capacity:
            # Not stored with the point (collected before predictions were kept per rung):
            # the same model at the same rate.
            at = prediction.at(r.offered)
            pred_mean, pred_p99 = at.mean_ms, at.p99_ms
        measured.append((r.offered, mean, p99))
        table.append([r.point, r.offered, mean, pred_mean, _pct_text(error_pct(pred_mean, mean)),
                      p99, pred_p99, _pct_text(error_pct(pred_p99, p99))])
    if not rungs:
        notes.append("No Poisson rung of this family was measured: nothing to compare.")
    curve = prediction.curve(np.linspace(CURVE_FROM, CURVE_TO, CURVE_POINTS) * capacity)
    image = plots.prediction_png(
        measured, [(c.rate_rps, c.mean_ms, c.p99_ms) for c in curve],
        out_dir / f"prediction_{index}.png", title=f"{label}: predicted vs measured",
        capacity_rps=capacity, slo_ms=slo_ms, percentile=slo_percentile)
    return {**head, "notes": notes,
            "tables": [_table(["point", "offered (req/s)", "measured mean (ms)",
                               "predicted mean (ms)", "mean error", "measured p99 (ms)",
                               "predicted p99 (ms)", "p99 error"], table)],
            "images": [("Latency vs offered Poisson rate: measured mean and p99 per rung "
                        "(markers), predicted (lines)", image)]}


def prediction_section(labelled: Sequence[tuple[str, Any]], rows: list[dict[str, Any]],
                       out_dir: Path, *, slo_percentile: float, slo_ms: float
                       ) -> dict[str, Any] | None:
    """"Predicted vs measured": one part per family the load stage predicted (`rows`:
    queries.family_prediction_rows), beside its rungs (`labelled`: (label,
    FamilyCapacity)). None when no family has a prediction row."""
    by_key = {(p["run_id"], p["platform"], p["config_index"], p["batch_size"]): p
              for p in rows}
    parts, failed = [], []
    for index, (label, family) in enumerate(labelled):
        row = by_key.get((family.run_id, family.platform, family.config_index,
                          family.batch_size))
        if row is None:
            continue
        if row.get("model") is None:
            failed.append(f"{label}: {row.get('error') or 'no model was stored'}")
            continue
        parts.append(_prediction_part(index, label, family, row, out_dir,
                                      slo_percentile=slo_percentile, slo_ms=slo_ms))
    if not parts and not failed:
        return None
    notes = ["Before its ladder, each family's server was profiled lightly (1..c + 1 "
             "requests always in flight) and its latency under Poisson arrivals predicted by "
             "a queueing model (analysis/prediction.py); the curve is recomputed here from "
             "the stored profile. Error = (predicted - measured) / measured, per rung; a "
             "rung at or beyond the model's capacity has no prediction."]
    if failed:
        notes.append("No prediction for " + "; ".join(failed))
    return {"id": "prediction", "title": "Predicted vs measured", "notes": notes,
            "tables": [], "images": [], "parts": parts}


def prediction_summary(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A family's prediction in the summary (None: the load stage predicted nothing):
    the model's name, or why there is no curve (unmodelled) or no model (error)."""
    if row is None:
        return None
    model = row.get("model") or {}
    return {"model_name": row.get("model_name"), "unmodelled": row.get("unmodelled"),
            "caveats": list(model.get("caveats") or []),
            "capacity_rps": row.get("capacity_rps"),
            "slo_capacity_rps": row.get("slo_capacity_rps"),
            "guided_start": row.get("guided_start"), "error": row.get("error")}
