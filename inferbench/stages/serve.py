"""serve: start one platform's server, wait until its model is ready, time the cold start.

The endpoint file is written as soon as the process exists, so the teardown task can stop
the server even if readiness never comes. `stop` is that teardown.
"""

from __future__ import annotations

import time
from pathlib import Path

from inferbench.backends import get_backend
from inferbench.backends.base import ServeContext
from inferbench.backends.process import spawn, stop_group, wait_ready
from inferbench.errors import InferBenchError
from inferbench.netutil import free_port
from inferbench.stages.common import StageContext, read_json, write_json

READY_TIMEOUT_S = 180.0


def serve_context(ctx: StageContext, platform: str) -> ServeContext:
    backend = get_backend(platform)
    conversions = read_json(ctx.run_dir.model_dir / "conversions.json") or {}
    converted = conversions.get(backend.model_format.value)
    if not converted or not converted["passed"]:
        raise InferBenchError(
            f"platform {platform!r} needs a checked {backend.model_format.value!r} model, but "
            f"the convert stage did not produce one for run {ctx.run_id!r}")
    model = ctx.spec.model
    return ServeContext(
        model_name=model.name, model_path=Path(converted["artifact_path"]),
        input_shape=tuple(model.input_shape), num_outputs=model.num_outputs,
        workdir=ctx.run_dir.platform_dir(platform), http_port=free_port(),
        grpc_port=free_port(), metrics_port=free_port(),
        max_batch_size=max(ctx.spec.batch_sizes))


def run(ctx: StageContext, platform: str) -> dict:
    backend = get_backend(platform)
    sctx = serve_context(ctx, platform)
    backend.prepare(sctx)
    plan = backend.launch_plan(sctx)
    log_path = sctx.workdir / "server.log"
    endpoint_file = ctx.run_dir.endpoint_file(platform)
    base_url = f"http://127.0.0.1:{sctx.http_port}"
    started = time.perf_counter()
    process = spawn(plan, log_path)
    endpoint = {"platform": platform, "url": base_url, "model_name": sctx.model_name,
                "protocol": backend.protocol, "pid": process.pid, "log": str(log_path),
                "platform_version": backend.version(), "status": "starting",
                "started_at": time.time()}
    write_json(endpoint_file, endpoint)
    try:
        wait_ready(base_url + backend.ready_path(sctx), process, READY_TIMEOUT_S, log_path)
    except Exception as exc:
        stop_group(process.pid)
        endpoint.update(status="failed", error=str(exc))
        write_json(endpoint_file, endpoint)
        raise
    endpoint.update(status="ready", cold_start_s=time.perf_counter() - started,
                    ready_at=time.time())
    write_json(endpoint_file, endpoint)
    return endpoint


def stop(ctx: StageContext, platform: str) -> dict:
    endpoint_file = ctx.run_dir.endpoint_file(platform)
    endpoint = read_json(endpoint_file)
    if endpoint is None:
        return {"platform": platform, "stopped": False, "reason": "never started"}
    was_running = stop_group(int(endpoint["pid"]))
    endpoint["stopped_at"] = time.time()
    write_json(endpoint_file, endpoint)
    return {"platform": platform, "stopped": was_running}
