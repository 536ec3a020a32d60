"""A model runtime behind the project's own FastAPI server (inferbench.servers.fastapi_server):
one backend class per runtime, the same server, batcher and protocol for each."""

from __future__ import annotations

import json
import sys
import urllib.request
from importlib.metadata import version as dist_version
from typing import ClassVar

from inferbench.backends.base import Backend, LaunchPlan, ServeContext, ServingDevice
from inferbench.errors import InferBenchError
from inferbench.models import signature


class FastApiRuntimeBackend(Backend):
    runtime: ClassVar[str]  # a key of inferbench.servers.runtimes.RUNTIMES
    runtime_distribution: ClassVar[str]  # the package whose version is the platform's
    has_model_stats = True  # the batcher's counters

    def prepare(self, ctx: ServeContext) -> None:
        pass  # serves the converted model file in place

    def launch_plan(self, ctx: ServeContext) -> LaunchPlan:
        return LaunchPlan(argv=[
            sys.executable, "-m", "inferbench.servers.fastapi_server",
            "--runtime", self.runtime,
            "--model-path", str(ctx.model_path), "--model-name", ctx.model_name,
            "--inputs", signature.to_text(ctx.inputs),
            "--port", str(ctx.http_port), "--threads", str(ctx.threads),
            "--instances", str(ctx.server.instance_count),
            "--max-batch-size", str(ctx.max_batch_size), "--device", ctx.device,
            *(["--precision", ctx.server.openvino_precision] if self.runtime == "openvino"
              else []),
            # preferred_batch_sizes is a Triton knob; this batcher has the two basic ones.
            *(["--dynamic-batching", "--max-queue-delay-us",
               str(ctx.server.max_queue_delay_us)] if ctx.server.dynamic_batching else []),
            *(["--preprocess", ctx.processing.preprocess] if ctx.processing.preprocess
              else []),
            *(["--postprocess", ctx.processing.postprocess] if ctx.processing.postprocess
              else []),
        ])

    def ask_serving_device(self, ctx: ServeContext, base_url: str) -> ServingDevice:
        """The device the server's model metadata reports (servers/fastapi_server.py)."""
        url = f"{base_url}/v2/models/{ctx.model_name}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                meta = json.loads(response.read())
                return ServingDevice(str(meta["device"]), meta.get("accelerator"))
        except (OSError, ValueError, KeyError) as exc:
            raise InferBenchError(f"the server's model metadata at {url} does not say where "
                                  f"the model runs ({exc})") from None

    def version(self) -> str:
        return (f"{self.runtime_distribution} {dist_version(self.runtime_distribution)} + "
                f"fastapi {dist_version('fastapi')}")
