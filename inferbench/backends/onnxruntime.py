"""ONNX Runtime behind the project's own FastAPI server (inferbench.servers.onnxruntime_server)."""

from __future__ import annotations

import sys
from importlib.metadata import version as dist_version

from inferbench.backends.base import Backend, LaunchPlan, ServeContext
from inferbench.spec import ModelFormat


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    model_format = ModelFormat.ONNX

    def prepare(self, ctx: ServeContext) -> None:
        pass  # serves the converted .onnx file in place

    def launch_plan(self, ctx: ServeContext) -> LaunchPlan:
        return LaunchPlan(argv=[
            sys.executable, "-m", "inferbench.servers.onnxruntime_server",
            "--model-path", str(ctx.model_path), "--model-name", ctx.model_name,
            "--port", str(ctx.http_port), "--threads", str(ctx.threads),
            "--instances", str(ctx.server.instance_count),
            "--max-batch-size", str(ctx.max_batch_size),
            # preferred_batch_sizes is a Triton knob; this batcher has the two basic ones.
            *(["--dynamic-batching", "--max-queue-delay-us",
               str(ctx.server.max_queue_delay_us)] if ctx.server.dynamic_batching else []),
        ])

    def version(self) -> str:
        return f"onnxruntime {dist_version('onnxruntime')} + fastapi {dist_version('fastapi')}"
