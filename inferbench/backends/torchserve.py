"""TorchServe 0.12: its Java frontend (queueing, batching, HTTP) and Python workers.

`prepare` builds the model archive with torch-model-archiver from the TorchScript model
and the project's handler (`inferbench/servers/torchserve_handler.py`: raw float32 tensors
in and out) and writes config.properties, which registers the model at start-up with the
benchmark's server configuration:

- instance_count -> minWorkers = maxWorkers (worker processes, each with its own model);
- dynamic batching -> batchSize (TorchServe counts *requests*, each of which may carry a
  client batch of several samples; the benchmark's largest batch in samples is used as
  the request count, so a batch never holds fewer samples than the other platforms allow)
  and maxBatchDelay (milliseconds, TorchServe's resolution: the queue delay is rounded up).

Every port TorchServe opens is set (inference, management, metrics, and its two gRPC
ports, which would otherwise take the fixed defaults 7070/7071 and collide with a second
server), token authorisation is off (0.12 turns it on by default; the benchmark talks to
127.0.0.1 only), and metrics come in Prometheus format from the metrics port.

Server-side split: TorchServe's frontend counts, per model, completed requests
(`ts_inference_requests_total`), their cumulative time in the job queue
(`ts_queue_latency_microseconds`) and their cumulative time from arrival to response
(`ts_inference_latency_microseconds`, which includes the queue). Compute is the second
minus the first: the worker's IPC plus the handler, as Triton's compute includes its
Python-backend stub round trip.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from importlib.resources import files
from pathlib import Path

from inferbench.backends.base import (
    Backend,
    LaunchPlan,
    ServeContext,
    ServerStats,
    ServingDevice,
    clear_device_report,
    device_report_path,
    read_device_report,
)
from inferbench.backends.server_stats import read_metrics
from inferbench.errors import InferBenchError
from inferbench.netutil import free_port
from inferbench.platforms import DeviceKind, ModelFormat, PlatformDescriptor, Transport, gpu_index

HANDLER_FILE = "torchserve_handler.py"
SETTINGS_FILE = "inferbench.json"  # read by the handler (torchserve_handler.SETTINGS_FILE)
RESPONSE_TIMEOUT_S = 120


def _require_installed() -> None:
    for dist in ("torchserve", "torch-model-archiver"):
        try:
            dist_version(dist)
        except PackageNotFoundError:
            raise InferBenchError(f"platform 'torchserve' needs {dist}, which is not "
                                  "installed; fix: pip install 'inferbench[torchserve]'") from None
    if shutil.which("java") is None:
        raise InferBenchError("platform 'torchserve' needs Java 17 (its frontend is Java); "
                              "fix: apt-get install openjdk-17-jre-headless")


def model_registration(ctx: ServeContext) -> dict:
    """The `models` entry of config.properties for the served model."""
    server = ctx.server
    batching = server.dynamic_batching
    return {ctx.model_name: {"1.0": {
        "defaultVersion": True,
        "marName": f"{ctx.model_name}.mar",
        "minWorkers": server.instance_count,
        "maxWorkers": server.instance_count,
        "batchSize": ctx.max_batch_size if batching else 1,
        "maxBatchDelay": math.ceil(server.max_queue_delay_us / 1000) if batching else 0,
        "responseTimeout": RESPONSE_TIMEOUT_S,
    }}}


def config_properties(ctx: ServeContext, model_store: Path, ports: dict[str, int]) -> str:
    settings = {
        "inference_address": f"http://127.0.0.1:{ctx.http_port}",
        "management_address": f"http://127.0.0.1:{ports['management']}",
        "metrics_address": f"http://127.0.0.1:{ctx.metrics_port}",
        "grpc_inference_address": "127.0.0.1",
        "grpc_inference_port": str(ctx.grpc_port),
        "grpc_management_address": "127.0.0.1",
        "grpc_management_port": str(ports["grpc_management"]),
        "model_store": str(model_store),
        "load_models": f"{ctx.model_name}.mar",
        "models": json.dumps(model_registration(ctx), separators=(",", ":")),
        "metrics_mode": "prometheus",
        "disable_token_authorization": "true",
        "install_py_dep_per_model": "false",
        # The frontend's own threads; the model's compute budget is the handler's.
        "number_of_netty_threads": "2",
        "netty_client_threads": "2",
        "default_response_timeout": str(RESPONSE_TIMEOUT_S),
        # GPUs TorchServe hands its workers (gpu_id); the handler runs on the spec's device.
        "number_of_gpu": "0" if gpu_index(ctx.device) is None else "1",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class TorchServeBackend(Backend):
    name = "torchserve"
    descriptor = PlatformDescriptor(
        model_format=ModelFormat.TORCHSCRIPT,
        # HTTP only: TorchServe's gRPC API takes its own messages (inference.proto), for
        # which the load generator has no client.
        protocols={Transport.HTTP: "torchserve"},
        startup_s=8.0,
        # The project's handler loads the model onto the spec's device and reports it.
        devices={DeviceKind.CPU: "TorchServe's Python workers, PyTorch on the CPU",
                 DeviceKind.GPU: "TorchServe's Python workers, PyTorch on cuda:<index> (a "
                 "CUDA build of torch on the worker)"},
    )

    @staticmethod
    def model_store(ctx: ServeContext) -> Path:
        return ctx.workdir / "model_store"

    def prepare(self, ctx: ServeContext) -> None:
        _require_installed()
        model_path = ctx.model_path.resolve()
        if not model_path.is_file():
            raise InferBenchError(f"TorchScript model {model_path} does not exist; the convert "
                                  "stage must run before the torchserve platform is prepared")
        store = self.model_store(ctx)
        if store.exists():  # TorchServe loads what it finds: start from an empty store
            shutil.rmtree(store)
        store.mkdir(parents=True)
        build = ctx.workdir / "archive-src"
        build.mkdir(exist_ok=True)
        handler = build / HANDLER_FILE
        handler.write_text(files("inferbench.servers").joinpath(HANDLER_FILE).read_text())
        # Refused here, in seconds, rather than by every worker TorchServe keeps restarting
        # (its health check would stay unhealthy until the ready timeout).
        from inferbench.servers.runtimes import torch_device  # numpy, torch: not on lookups

        torch_device(ctx.device)
        clear_device_report(ctx)
        settings = build / SETTINGS_FILE
        settings.write_text(json.dumps({"inputs": [{"name": t.name, "dtype": t.dtype,
                                                    "shape": list(t.shape)}
                                                   for t in ctx.inputs],
                                        "threads": ctx.threads, "device": ctx.device,
                                        "device_report": str(device_report_path(ctx))}))
        archiver = Path(sys.executable).with_name("torch-model-archiver")
        result = subprocess.run(
            [str(archiver), "--model-name", ctx.model_name, "--version", "1.0",
             "--serialized-file", str(model_path), "--handler", str(handler),
             "--extra-files", str(settings), "--export-path", str(store), "--force"],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise InferBenchError(f"torch-model-archiver failed ({result.returncode}): "
                                  f"{(result.stderr or result.stdout)[-800:]}")
        ports = {"management": free_port(), "grpc_management": free_port()}
        (ctx.workdir / "config.properties").write_text(config_properties(ctx, store, ports))
        (ctx.workdir / "ports.json").write_text(json.dumps(ports))

    def launch_plan(self, ctx: ServeContext) -> LaunchPlan:
        launcher = Path(sys.executable).with_name("torchserve")
        return LaunchPlan(
            argv=[str(launcher), "--start", "--foreground", "--ncs",
                  "--ts-config", str(ctx.workdir / "config.properties"),
                  "--model-store", str(self.model_store(ctx))],
            # The workers are started as `python` from PATH: the venv's, which has torch.
            env={"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
                 # TorchServe writes its logs and metrics logs under the working directory.
                 "LOG_LOCATION": str(ctx.workdir / "logs"),
                 "METRICS_LOCATION": str(ctx.workdir / "logs"),
                 # The launcher refuses to start while the pid file of another TorchServe
                 # exists in the temp directory (/tmp/.model_server.pid): one per server.
                 "TMPDIR": str(ctx.workdir)},
            cwd=ctx.workdir)

    def ask_serving_device(self, ctx: ServeContext, base_url: str) -> ServingDevice:
        """What the handler reported once it had loaded the model (TorchServe's APIs do not
        say where a worker runs it)."""
        return read_device_report(ctx, self.name)

    def ready_path(self, ctx: ServeContext) -> str:
        # The inference API's health check answers 200 only once every registered model has
        # its minimum workers up (500 "Unhealthy" / "Partial Healthy" before).
        return "/ping"

    def version(self) -> str:
        return _version()

    def server_stats(self, base_url: str, model_name: str, metrics_url: str | None = None
                     ) -> ServerStats | None:
        return read_metrics(metrics_url,
                            lambda text: parse_prometheus_stats(text, model_name))


def parse_prometheus_stats(text: str, model_name: str) -> ServerStats | None:
    """ServerStats of one model from TorchServe's Prometheus text; None before its first
    request (the counters appear only then). Raises ValueError on text that is not the
    Prometheus exposition format."""
    try:
        # Imported here: ~70 ms, and only reading the counters needs it.
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        raise InferBenchError("reading TorchServe's metrics needs prometheus-client, which is "
                              "not installed; fix: pip install 'inferbench[torchserve]'") from None
    # Keyed by family name without `_total`: the parser drops that suffix from counter
    # families (and adds it to the samples of counters named without it).
    wanted = {"ts_inference_requests": 0.0, "ts_queue_latency_microseconds": 0.0,
              "ts_inference_latency_microseconds": 0.0}
    seen = set()
    for family in text_string_to_metric_families(text):
        name = family.name.removesuffix("_total")
        if name not in wanted:
            continue
        for sample in family.samples:
            # Summed over the model's versions; `_created` samples are timestamps.
            if (sample.labels.get("model_name") == model_name
                    and not sample.name.endswith("_created")):
                wanted[name] += sample.value
                seen.add(name)
    if len(seen) < len(wanted):
        return None
    queue_us = wanted["ts_queue_latency_microseconds"]
    total_us = wanted["ts_inference_latency_microseconds"]
    return ServerStats(requests=int(wanted["ts_inference_requests"]),
                       queue_ns=int(queue_us * 1000),
                       compute_ns=int(max(total_us - queue_us, 0.0) * 1000))


@functools.cache
def _version() -> str:
    """`torchserve 0.12.0 (torch 2.13.0+cpu, java 17.0.15)`."""
    try:
        first = subprocess.run(["java", "-version"], capture_output=True, text=True,
                               check=False, timeout=30).stderr.splitlines()[0]
        # e.g. `openjdk version "17.0.15" 2025-04-15`: the quoted part is the version.
        java = first.split('"')[1] if first.count('"') >= 2 else first.strip()
    except (OSError, subprocess.TimeoutExpired, IndexError):
        java = "unknown"
    return (f"torchserve {dist_version('torchserve')} (torch {dist_version('torch')}, "
            f"java {java})")
