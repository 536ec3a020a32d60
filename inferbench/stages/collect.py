"""collect: gather one platform's measurements and provenance into PostgreSQL, one
transaction per server configuration. It runs whether or not serve/load succeeded: what was
measured is always kept, and each configuration's deployment row says whether it was
measured, partial or failed."""

from __future__ import annotations

import json
from typing import Any, TypedDict

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.gpu_sharing import Sharing
from inferbench.metrics.provenance import collect_provenance
from inferbench.perfdb import writer
from inferbench.server_grid import ResolvedConfig, resolve_configs
from inferbench.stages.common import (
    Endpoint,
    LoadSummary,
    StageContext,
    load_point_records,
    read_endpoint,
    read_load_summary,
)


class ConfigCollected(TypedDict):
    """What one configuration's transaction stored."""

    config: int
    label: str
    status: str          # measured | partial | failed
    points: int
    requests: int


class CollectResult(TypedDict):
    platform: str
    configs: list[ConfigCollected]
    status: str          # the one configuration's status, or the distinct ones joined by ","
    points: int
    requests: int


def deployment_status(endpoint: Endpoint | None, load: LoadSummary | None,
                      n_points: int) -> tuple[str, str | None]:
    if endpoint is None:
        return "failed", "the server was never started"
    if endpoint.get("status") == "failed":
        return "failed", endpoint.get("error")
    measured = len((load or {}).get("points", []))
    if load is None or measured == 0:
        return "failed", (load or {}).get("error") or "no measurement was recorded"
    if measured < n_points or load.get("error"):
        return "partial", load.get("error") or f"{measured} of {n_points} points measured"
    return "measured", None


def run(ctx: StageContext, platform: str, config: int | None = None) -> CollectResult:
    """Every configuration of the platform (or only `config`)."""
    configs = [r for r in resolve_configs(ctx.spec, ctx.run_dir, platform)
               if config is None or r.index == config]
    results = [_collect_config(ctx, r) for r in configs]
    return {"platform": platform, "configs": results,
            "status": results[0]["status"] if len(results) == 1 else
            ",".join(sorted({r["status"] for r in results})),
            "points": sum(r["points"] for r in results),
            "requests": sum(r["requests"] for r in results)}


# Only from a server that times each request's stay (server_stats.split_ms).
SERVER_STAY_KEYS = ("server_handling_ms", "server_receive_ms")
SERVER_SPLIT_KEYS = ("server_requests", "server_queue_ms", "server_compute_ms",
                     *SERVER_STAY_KEYS)
CLIENT_TIMING_KEYS = ("client_send_ms", "client_receive_ms")
TRANSMIT_KEYS = ("transmit_up_ms", "transmit_down_ms", "link_wait_ms")
PROCESSING_KEYS = ("client_preprocess_ms", "client_postprocess_ms", "server_preprocess_ms",
                   "server_postprocess_ms")
PREDICTED_KEYS = ("predicted_mean_ms", "predicted_p99_ms")


def prediction_rows(load: LoadSummary | None) -> list[dict[str, Any]]:
    """The `family_predictions` rows of a load.json: one per family (batch size) the load
    stage profiled, the model's name, reason for no curve and capacity pulled out of its
    dict; none when it predicted nothing (an older load.json, or prediction off). A batch
    size listed twice keeps its last entry."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in (load or {}).get("predictions") or []:
        model = entry.get("model") or {}
        rows[int(entry["batch_size"])] = {
            "batch_size": int(entry["batch_size"]),
            "parallelism": int(entry["parallelism"]),
            "dynamic_batching": bool(entry.get("dynamic_batching")),
            "profile_s": entry.get("profile_s"),
            "levels": entry.get("levels") or [],
            "model": entry.get("model"),
            "model_name": None if model.get("unmodelled") else model.get("name"),
            "unmodelled": model.get("unmodelled"),
            "capacity_rps": model.get("capacity_rps"),
            "slo_capacity_rps": entry.get("slo_capacity_rps"),
            "guided_start": entry.get("guided_start"),
            "error": entry.get("error")}
    return list(rows.values())


def _collect_config(ctx: StageContext, resolved: ResolvedConfig) -> ConfigCollected:
    platform, config, files = resolved.platform, resolved.index, resolved.files
    endpoint = read_endpoint(files.endpoint)
    load = read_load_summary(files.load)
    status, error = deployment_status(endpoint, load, len(ctx.spec.batch_sizes))
    points: list[dict[str, Any]] = []
    requests: dict[int, dict[str, np.ndarray]] = {}
    unreadable: list[str] = []
    for p in (load or {}).get("points", []):
        try:
            requests[p["point"]] = load_point_records(files.point_records(p["point"]))
        except InferBenchError as exc:
            # One damaged file costs its own point, not the configuration's other points
            # (nor the later configurations this task collects).
            unreadable.append(f"point {p['point']}: {exc}")
            continue
        points.append({**{k: p[k] for k in ("point", "batch_size", "arrival", "concurrency",
                                             "target_rate_rps", "started_ns", "ended_ns",
                                             "stop_reason", "complete", "client_cpu_s",
                                             "host_stall_pct")},
                       # absent before they were recorded
                       **{k: p.get(k) for k in ("issuer_nice", "issuer_realtime",
                                                "resent_requests")},
                       # absent from a load.json of before these columns: no server split
                       **{k: p.get(k) for k in SERVER_SPLIT_KEYS},
                       # absent on the loopback (no emulated link): NULL
                       **{k: p.get(k) for k in TRANSMIT_KEYS},
                       # absent from a load.json of before the client timed them: NULL
                       **{k: p.get(k) for k in CLIENT_TIMING_KEYS},
                       # absent without a pipeline: NULL
                       **{k: p.get(k) for k in PROCESSING_KEYS},
                       # absent before predictions (or with prediction off): NULL
                       **{k: p.get(k) for k in PREDICTED_KEYS}})
    if unreadable:
        status = "partial" if points else "failed"
        error = "; ".join(filter(None, [error, *unreadable]))
    samples = json.loads(files.samples.read_text()) if files.samples.exists() else []
    provenance = {
        **collect_provenance(),
        "platform": platform,
        "platform_version": (endpoint or {}).get("platform_version"),
        "device": (endpoint or {}).get("device"),  # where the model ran
        "accelerator": (endpoint or {}).get("accelerator"),  # and with what, on a GPU
        "sharing": (endpoint or {}).get("sharing", Sharing.NONE.value),  # the GPU's sharing
        "spec_hash": ctx.spec.spec_hash(),
        "model_seed": ctx.spec.model.seed,
        "workload_seed": ctx.spec.workload.seed,
        "server_config": resolved.label,
    }
    deployment = {"endpoint": (endpoint or {}).get("url"),
                  "platform_version": (endpoint or {}).get("platform_version"),
                  "cold_start_s": (endpoint or {}).get("cold_start_s"),
                  "status": status, "error": error}
    with ctx.db.begin() as conn:
        writer.replace_platform_measurements(
            conn, ctx.run_id, platform, deployment=deployment, points=points,
            requests=requests, samples=samples, provenance=provenance,
            config_index=config,
            server_config={"label": resolved.label, "knobs": resolved.knobs()},
            predictions=prediction_rows(load))
    return {"config": config, "label": resolved.label, "status": status,
            "points": len(points),
            "requests": int(sum(len(r["status"]) for r in requests.values()))}
