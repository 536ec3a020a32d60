"""collect: gather one platform's measurements and provenance into PostgreSQL, one
transaction per server configuration. It runs whether or not serve/load succeeded: what was
measured is always kept, and each configuration's deployment row says whether it was
measured, partial or failed."""

from __future__ import annotations

import json

import numpy as np

from inferbench.metrics.provenance import collect_provenance
from inferbench.perfdb import writer
from inferbench.server_grid import server_configs
from inferbench.stages.common import StageContext, read_json


def deployment_status(endpoint: dict | None, load: dict | None,
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


def run(ctx: StageContext, platform: str, config: int | None = None) -> dict:
    """Every configuration of the platform (or only `config`)."""
    configs = [c for c in server_configs(ctx.spec) if config is None or c.index == config]
    results = [_collect_config(ctx, platform, c) for c in configs]
    return {"platform": platform, "configs": results,
            "status": results[0]["status"] if len(results) == 1 else
            ",".join(sorted({r["status"] for r in results})),
            "points": sum(r["points"] for r in results),
            "requests": sum(r["requests"] for r in results)}


SERVER_SPLIT_KEYS = ("server_requests", "server_queue_ms", "server_compute_ms")


def _collect_config(ctx: StageContext, platform: str, labelled) -> dict:
    config = labelled.index
    pdir = ctx.run_dir.config_dir(platform, config)
    endpoint = read_json(ctx.run_dir.endpoint_file(platform, config))
    load = read_json(ctx.run_dir.load_file(platform, config))
    status, error = deployment_status(endpoint, load, len(ctx.spec.batch_sizes))
    points, requests = [], {}
    for p in (load or {}).get("points", []):
        requests[p["point"]] = dict(np.load(pdir / "points" / f"{p['point']}.npz"))
        points.append({**{k: p[k] for k in ("point", "batch_size", "arrival", "concurrency",
                                             "target_rate_rps", "started_ns", "ended_ns",
                                             "stop_reason", "complete", "client_cpu_s",
                                             "host_stall_pct")},
                       # absent from a load.json of before these columns: no server split
                       **{k: p.get(k) for k in SERVER_SPLIT_KEYS}})
    samples_file = pdir / "samples.json"
    samples = json.loads(samples_file.read_text()) if samples_file.exists() else []
    provenance = {
        **collect_provenance(),
        "platform": platform,
        "platform_version": (endpoint or {}).get("platform_version"),
        "spec_hash": ctx.spec.spec_hash(),
        "model_seed": ctx.spec.model.seed,
        "workload_seed": ctx.spec.workload.seed,
        "server_config": labelled.label,
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
            server_config={"label": labelled.label, "knobs": labelled.knobs()})
    return {"config": config, "label": labelled.label, "status": status,
            "points": len(points),
            "requests": int(sum(len(r["status"]) for r in requests.values()))}
