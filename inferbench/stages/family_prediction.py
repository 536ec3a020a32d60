"""The load stage's prediction of one family: a light profile of the ready server before
the ladder (inferbench/load/profile.py), the queueing model's curve (analysis/prediction.py),
the capacity it predicts within the SLO (where a search starts), and the predicted latency
at each rung's rate, stored with the point.

A profile that fails costs the prediction, not the family: the ladder then runs unguided
and the entry says why.
"""

from __future__ import annotations

import time

from analysis.prediction import Prediction, predict
from inferbench.errors import InferBenchError
from inferbench.load.profile import profile_levels
from inferbench.load.runner import Request
from inferbench.server_grid import ResolvedConfig
from inferbench.spec import BenchmarkSpec
from inferbench.stages.common import FamilyPrediction


def predict_family(spec: BenchmarkSpec, resolved: ResolvedConfig, requests: list[Request],
                   batch_size: int) -> tuple[Prediction | None, FamilyPrediction]:
    """Profile the family's server and predict its curve; (None, entry with the error)
    when it cannot be profiled."""
    server = resolved.server
    c = server.instance_count
    entry: FamilyPrediction = {
        "batch_size": batch_size, "parallelism": c,
        "dynamic_batching": server.dynamic_batching, "profile_s": 0.0, "levels": [],
        "model": None, "slo_capacity_rps": None, "guided_start": None, "error": None}
    started = time.monotonic()
    try:
        levels = profile_levels(requests, c, profile_s=spec.ladder.profile_s,
                                warmup_s=spec.warmup_s,
                                request_timeout_s=spec.request_timeout_s,
                                seed=spec.workload.seed,
                                log=lambda line: print(f"b{batch_size} {line}", flush=True),
                                dynamic_batching=server.dynamic_batching)
    except (InferBenchError, ValueError) as exc:
        entry["profile_s"] = round(time.monotonic() - started, 3)
        entry["error"] = f"profiling failed: {exc}"
        print(f"b{batch_size} no prediction ({entry['error']}); the ladder runs unguided",
              flush=True)
        return None, entry
    entry["profile_s"] = round(time.monotonic() - started, 3)
    entry["levels"] = [lv.to_dict() for lv in levels]
    prediction = predict(levels, c, dynamic_batching=server.dynamic_batching)
    entry["model"] = prediction.model.to_dict()
    if prediction.model.unmodelled:
        print(f"b{batch_size} no prediction: {prediction.model.unmodelled}", flush=True)
        return prediction, entry
    entry["slo_capacity_rps"] = prediction.capacity_rps(spec.slo.latency_ms,
                                                        spec.slo.percentile)
    within = ("nothing" if entry["slo_capacity_rps"] is None
              else f"{entry['slo_capacity_rps']:.1f} req/s")
    print(f"b{batch_size} predicted ({prediction.model.name}): capacity "
          f"{prediction.model.capacity_rps:.1f} req/s, within p{spec.slo.percentile:g} <= "
          f"{spec.slo.latency_ms:g} ms: {within}", flush=True)
    return prediction, entry


def predicted_at(prediction: Prediction | None, offered: float | None
                 ) -> dict[str, float | None]:
    """The predicted mean and p99 at a rung's Poisson rate (None where there is none)."""
    if prediction is None or prediction.model.unmodelled or offered is None:
        return {"predicted_mean_ms": None, "predicted_p99_ms": None}
    point = prediction.at(offered)
    return {"predicted_mean_ms": point.mean_ms, "predicted_p99_ms": point.p99_ms}
