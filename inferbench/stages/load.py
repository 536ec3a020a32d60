"""load: drive the spec's workload at one platform, one measurement point per batch size.

Each point's per-request records are saved as soon as the point ends and `load.json` is
rewritten after every point, so a failure later keeps what was already measured.

`run` is the stage entry point; it resolves the configuration and reads its endpoint, then
`drive` does the work (the measure stage calls `drive` with the endpoint it just started).
"""

from __future__ import annotations

import json
from typing import TypedDict

import numpy as np

from inferbench.backends import get_backend
from inferbench.backends.base import Backend
from inferbench.backends.server_stats import split_ms
from inferbench.errors import InferBenchError
from inferbench.load.arrivals import schedule_for
from inferbench.load.protocols import Protocol, Target, get_protocol
from inferbench.load.runner import Request, StopRule, run_point
from inferbench.metrics.host_noise import host_stall_pct
from inferbench.metrics.sampler import ResourceSampler
from inferbench.server_grid import ResolvedConfig, resolve_config
from inferbench.spec import Transport
from inferbench.stages.common import (
    Endpoint,
    LoadPoint,
    LoadSummary,
    StageContext,
    read_endpoint,
    write_json,
)

DISTINCT_PAYLOADS = 8  # requests rotate over a few seeded inputs, encoded once up front


def _batches(ctx: StageContext, batch_size: int) -> list[np.ndarray]:
    """The seeded inputs of one point (the same for either transport)."""
    rng = np.random.default_rng(ctx.spec.workload.seed * 7919 + batch_size)
    shape = (batch_size, *ctx.spec.model.input_shape)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(DISTINCT_PAYLOADS)]


class PointBrief(TypedDict):
    """A measured point as the stage reports it (load.json has the whole `LoadPoint`)."""

    point: int
    batch_size: int
    n_requests: int
    stop_reason: str


class LoadResult(TypedDict):
    platform: str
    config: int
    points: list[PointBrief]


def protocol_target(ctx: StageContext, endpoint: Endpoint, backend: Backend
                    ) -> tuple[Protocol, Target]:
    """The backend's client for the spec's transport, aimed at the served model."""
    if ctx.spec.workload.transport is Transport.GRPC:
        if not endpoint.get("grpc_url") or backend.grpc_protocol is None:
            raise InferBenchError(f"platform {endpoint['platform']!r} has no gRPC endpoint; "
                                  'fix: set workload.transport to "http"')
        name, url = backend.grpc_protocol, endpoint["grpc_url"]
    else:
        name, url = backend.protocol, endpoint["url"]
    return get_protocol(name), Target(url, endpoint["model_name"], backend.input_name,
                                      backend.output_name)


def build_requests(ctx: StageContext, protocol: Protocol, target: Target,
                   batch_size: int) -> list[Request]:
    return [protocol.build(target, batch) for batch in _batches(ctx, batch_size)]


def check_response(protocol: Protocol, request: Request, batch_size: int,
                   num_outputs: int) -> None:
    """One request before measuring: a misconfigured server fails here, not as 100 % errors."""
    status, headers, body = protocol.send_once(request)
    protocol.check(status, headers, body, batch_size)
    shapes = {k: v.shape for k, v in protocol.decode(headers, body).items()}
    if (batch_size, num_outputs) not in shapes.values():
        raise InferBenchError(f"server answered {request.url} with outputs {shapes}, expected "
                              f"shape {(batch_size, num_outputs)}")


def run(ctx: StageContext, platform: str, config: int = 0) -> LoadResult:
    """The load stage: measure configuration `config` of `platform`, whose server the serve
    stage started."""
    resolved = resolve_config(ctx.spec, ctx.run_dir, platform, config)
    return drive(ctx, resolved, read_endpoint(resolved.files.endpoint))


def drive(ctx: StageContext, resolved: ResolvedConfig, endpoint: Endpoint | None
          ) -> LoadResult:
    """One point per batch size at the configuration's ready server (`endpoint`)."""
    platform, config, files = resolved.platform, resolved.index, resolved.files
    if not endpoint or endpoint.get("status") != "ready":
        raise InferBenchError(f"platform {platform!r} has no ready server in run {ctx.run_id!r}"
                              " (see the serve task's log)")
    spec, workload = ctx.spec, ctx.spec.workload
    files.points_dir.mkdir(exist_ok=True)
    summary: LoadSummary = {"platform": platform, "config": config, "points": [],
                            "samples_file": files.samples.name}
    samples: list[dict] = []
    rule = StopRule(spec.min_duration_s, spec.min_requests, spec.max_duration_s,
                    spec.stability_windows, spec.stability_window_s, spec.stability_tolerance_pct)
    backend = get_backend(platform)
    protocol, target = protocol_target(ctx, endpoint, backend)

    def read_server_stats():
        return backend.server_stats(endpoint["url"], endpoint["model_name"],
                                    endpoint.get("metrics_url"))

    try:
        for index, batch_size in enumerate(spec.batch_sizes):
            requests = build_requests(ctx, protocol, target, batch_size)
            check_response(protocol, requests[0], batch_size, spec.model.num_outputs)
            stall_pct = host_stall_pct(spec.late_send_threshold_ms)
            # A server in its own container is not visible from this stage's container: its
            # process samples are missing there (host-wide samples are still taken).
            stats_before: list = []  # the server's counters once warm-up is over
            with ResourceSampler(endpoint.get("pid")) as sampler:
                records = run_point(
                    requests,
                    concurrency=None if workload.open_loop else workload.concurrency,
                    # Same seeds as before for poisson: the logged schedule is unchanged.
                    schedule=(lambda seed: schedule_for(workload, seed)) if workload.open_loop
                    else None,
                    seed=workload.seed + index, warmup_s=spec.warmup_s, rule=rule,
                    request_timeout_s=spec.request_timeout_s,
                    on_measure_start=lambda readings=stats_before: readings.append(
                        read_server_stats()))
            server_split = split_ms(stats_before[0] if stats_before else None,
                                    read_server_stats())
            samples.extend(sampler.samples)
            np.savez(files.point_records(index), **records.arrays())
            point: LoadPoint = {
                "point": index, "batch_size": batch_size, "arrival": workload.arrival.value,
                "concurrency": workload.concurrency, "target_rate_rps": workload.rate_rps,
                "started_ns": records.started_ns, "ended_ns": records.ended_ns,
                "stop_reason": records.stop_reason, "complete": records.complete,
                "client_cpu_s": records.client_cpu_s, "host_stall_pct": stall_pct,
                "n_requests": len(records), "stable": records.stable,
                "stability_reasons": records.stability_reasons, **server_split}
            summary["points"].append(point)
            files.samples.write_text(json.dumps(samples))
            write_json(files.load, summary)
    except Exception as exc:
        summary["error"] = f"{type(exc).__name__}: {exc}"
        files.samples.write_text(json.dumps(samples))
        write_json(files.load, summary)
        raise
    return {"platform": platform, "config": config,
            "points": [{"point": p["point"], "batch_size": p["batch_size"],
                        "n_requests": p["n_requests"], "stop_reason": p["stop_reason"]}
                       for p in summary["points"]]}
