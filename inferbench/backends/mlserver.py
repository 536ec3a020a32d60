"""MLServer (Seldon) 1.7.1 serving the ONNX model through a custom ONNX Runtime runtime.

MLServer pins fastapi<0.116 / starlette<0.47, which the project's own environment cannot
hold, so it runs from a side virtual environment (`inferbench.sidevenv`, name "mlserver"),
created on first use or ahead of time by scripts/setup.sh. Nothing of inferbench runs in
that environment: the runtime (`inferbench/servers/mlserver_runtime.py`) is copied into the
model directory, where MLServer imports it from.

The layout `prepare` writes, under the platform's workdir:

    mlserver/settings.json                    server: ports, workers, metrics
    mlserver/<model>/model-settings.json      model: runtime, ONNX path, threads, batching
    mlserver/<model>/inferbench_onnx_runtime.py

MLServer's REST front end does not implement the binary tensor extension, so the load
generator speaks plain V2 JSON to it ("kserve-v2-json"); its gRPC front end is the KServe
V2 `inference.GRPCInferenceService`, with raw tensor contents, like Triton's.

Server-side split: MLServer's own metrics time each request's whole stay in its data plane
but not the inference apart from the wait, so the runtime times ONNX Runtime's `session.run`
itself and counts it per client request in a custom metric on the metrics port, beside
MLServer's. `server_stats` reads both from /metrics: compute is the inference time, queue
the rest of the data plane's time (the adaptive batcher's wait, the hand-over to a worker
process and back, the worker's queue, decoding and encoding the tensors). MLServer is
started through inferbench/servers/mlserver_start.py, which times each REST request's whole
stay in the server (its REST layer too: routing, parsing the JSON, encoding the answer) in
counters on the same port; the stay less queue and compute is the server's handling.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

from inferbench import sidevenv
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
from inferbench.platforms import DeviceKind, ModelFormat, PlatformDescriptor, Transport, gpu_index


def side_env(device: str) -> str:
    """The side environment that serves on `device`: ONNX Runtime's CPU or CUDA build."""
    return SIDE_ENV if gpu_index(device) is None else GPU_SIDE_ENV

SIDE_ENV = "mlserver"
GPU_SIDE_ENV = "mlserver-gpu"  # with onnxruntime-gpu (inferbench/sidevenv.py)
RUNTIME_MODULE = "inferbench_onnx_runtime"
RUNTIME_CLASS = "OnnxRuntimeModel"
# The runtime's histogram of each completed client request's inference seconds
# (mlserver_runtime.COMPUTE_METRIC), labelled model_name / model_version.
COMPUTE_METRIC = "inferbench_request_compute_seconds"
# MLServer's data plane metrics (mlserver/handlers/dataplane.py), labelled model / version.
SUCCESS_METRIC = "model_infer_request_success_total"
DURATION_METRIC = "model_infer_request_duration"
# The start-up that times each REST request's stay (inferbench/servers/mlserver_start.py),
# and the timer it imports, as they are named in the repository.
START_FILES = {"mlserver_start.py": "inferbench_mlserver_start.py",
               "stay_timer.py": "inferbench_stay_timer.py"}
# Its counters (mlserver_start.py; counters get `_total` in the exposition).
REST_REQUESTS_METRIC = "inferbench_rest_requests_total"
REST_STAY_METRIC = "inferbench_rest_stay_seconds_total"
REST_RECEIVE_METRIC = "inferbench_rest_receive_seconds_total"


def repository(ctx: ServeContext) -> Path:
    return ctx.workdir / "mlserver"


def server_settings(ctx: ServeContext) -> dict[str, Any]:
    """settings.json: the server-wide settings."""
    repo = repository(ctx)
    return {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": ctx.http_port,
        "grpc_port": ctx.grpc_port,
        "metrics_port": ctx.metrics_port,
        "metrics_endpoint": "/metrics",
        # In 1.7.1 parallel_workers=0 runs inference inline in the server's asyncio event
        # loop (the one process that also parses HTTP/gRPC), while N >= 1 starts N worker
        # processes, each with its own copy of the model, fed over multiprocessing queues
        # (the default is 1). A worker per model instance is what instance_count means on
        # the other platforms (Triton instance_group, the FastAPI server's instances), and
        # 1 keeps MLServer's default architecture for a single instance.
        "parallel_workers": ctx.server.instance_count,
        # Workers share Prometheus counters through files here (and MLServer would create
        # .metrics / .envs in its working directory otherwise).
        "metrics_dir": str(repo / ".metrics"),
        "environments_dir": str(repo / ".envs"),
        "model_repository_root": str(repo),
        "load_models_at_startup": True,
        "server_name": "mlserver",
    }


def model_settings(ctx: ServeContext, onnx_path: Path) -> dict[str, Any]:
    """model-settings.json of the served model."""
    settings: dict[str, Any] = {
        "name": ctx.model_name,
        "implementation": f"{RUNTIME_MODULE}.{RUNTIME_CLASS}",
        "platform": "onnxruntime",
        "inputs": [{"name": t.name, "datatype": t.datatype,
                    "shape": [-1, *t.shape]} for t in ctx.inputs],
        "outputs": [{"name": Backend.output_name, "datatype": "FP32",
                     "shape": [-1, ctx.num_outputs]}],
        "parameters": {
            # The ONNX file in place: the dynamo exporter may keep weights in a
            # `.onnx.data` file beside it, which a copy would have to follow.
            "uri": str(onnx_path),
            "extra": {"intra_op_threads": ctx.threads, "device": ctx.device,
                      "device_report": str(device_report_path(ctx))},
        },
    }
    settings.update(batching(ctx))
    return settings


def batching(ctx: ServeContext) -> dict[str, Any]:
    """MLServer's adaptive batching fields, from ctx.server.

    MLServer batches when max_batch_size > 1 and max_batch_time > 0 (seconds); otherwise
    each request runs alone. Its max_batch_size counts requests, not rows: requests of
    batch b are merged up to max_batch_size of them (max_batch_size * b rows). The
    benchmark's largest batch is used as the request count, which equals the row limit
    of the other platforms for single-row requests. preferred_batch_sizes is a Triton knob
    with no MLServer counterpart."""
    server = ctx.server
    if not server.dynamic_batching:
        return {"max_batch_size": 0, "max_batch_time": 0.0}
    # A zero delay would switch the batcher off (mlserver/batching/hooks.py); one
    # microsecond keeps it on and takes what is already queued.
    return {"max_batch_size": ctx.max_batch_size,
            "max_batch_time": max(server.max_queue_delay_us, 1) / 1e6}


def _server_env() -> dict[str, str]:
    # The side environment's own packages only: nothing of the main venv on its path.
    return {"PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}


class MLServerBackend(Backend):
    name = "mlserver"
    descriptor = PlatformDescriptor(
        model_format=ModelFormat.ONNX,
        # REST: plain V2 JSON (no binary tensor extension); gRPC: KServe V2
        # GRPCInferenceService with raw tensor contents, like Triton's.
        protocols={Transport.HTTP: "kserve-v2-json", Transport.GRPC: "kserve-v2-grpc"},
        # 3.6-4.9 s measured (1-2 workers, batching on and off): mlserver start + worker spawn.
        startup_s=5.0,
        # The project's runtime asks ONNX Runtime for the spec's device and reports it.
        devices={DeviceKind.CPU: "ONNX Runtime's CPU execution provider, in MLServer's side "
                 "virtual environment",
                 DeviceKind.GPU: "ONNX Runtime's CUDA execution provider, in a side "
                 f"environment of its own ({GPU_SIDE_ENV}: onnxruntime-gpu)"},
    )

    def prepare(self, ctx: ServeContext) -> None:
        onnx_path = ctx.model_path.resolve()
        if not onnx_path.is_file():
            raise InferBenchError(f"ONNX model {onnx_path} does not exist; the convert stage "
                                  "must run before the mlserver platform is prepared")
        env = side_env(ctx.device)
        sidevenv.ensure(env)  # minutes the first time on a host, then instant
        if gpu_index(ctx.device) is not None:
            _require_cuda_provider(env, ctx.device)
        clear_device_report(ctx)
        repo = repository(ctx)
        # From an empty repository: MLServer loads every model-settings.json it finds.
        if repo.exists():
            shutil.rmtree(repo)
        model_dir = repo / ctx.model_name
        model_dir.mkdir(parents=True)
        (repo / "settings.json").write_text(json.dumps(server_settings(ctx), indent=2) + "\n")
        (model_dir / "model-settings.json").write_text(
            json.dumps(model_settings(ctx, onnx_path), indent=2) + "\n")
        (model_dir / f"{RUNTIME_MODULE}.py").write_text(
            files("inferbench.servers").joinpath("mlserver_runtime.py").read_text())
        for ours, theirs in START_FILES.items():
            (repo / theirs).write_text(files("inferbench.servers").joinpath(ours).read_text())

    def launch_plan(self, ctx: ServeContext) -> LaunchPlan:
        # MLServer's own command, through the start-up that times its REST layer.
        return LaunchPlan(argv=[str(sidevenv.python(side_env(ctx.device))),
                                str(repository(ctx) / START_FILES["mlserver_start.py"]),
                                "start", str(repository(ctx))],
                          env=_server_env(), ready_path=self.ready_path(ctx),
                          cwd=repository(ctx))

    def version(self) -> str:
        return _version(SIDE_ENV)

    def version_on(self, device: str) -> str:
        return _version(side_env(device))

    def ask_serving_device(self, ctx: ServeContext, base_url: str) -> ServingDevice:
        """What the runtime reported once it had loaded the model (ONNX Runtime's active
        execution provider; MLServer's metadata does not say)."""
        return read_device_report(ctx, self.name)

    def server_stats(self, base_url: str, model_name: str, metrics_url: str | None = None
                     ) -> ServerStats | None:
        """MLServer's counters and the runtime's, from the metrics port's /metrics; None
        without a metrics URL, or when the server does not answer them.

        - requests: `model_infer_request_success_total`, the client requests MLServer
          answered (its data plane counts each once, also when the adaptive batcher merged
          it with others);
        - compute: the `_sum` of the runtime's `inferbench_request_compute_seconds`, the
          ONNX Runtime `session.run` time of each client request whose inference
          completed (a merged request's run counts in full for each request in it, since
          each waited for the whole run, as Triton and the FastAPI server count a batch);
        - queue: the `_sum` of `model_infer_request_duration`, the Summary MLServer's data
          plane observes around each request's whole predict call (the batcher's wait,
          the hand-over to a worker process and back, the worker's queue, the runtime's
          decoding, inference and encoding), minus compute: the time MLServer held the
          requests other than inferring them. The Summary is observed as each request
          leaves the data plane, like the success counter, and covers the same requests
          but for failed ones, whose time it also holds and which so count as queue.

        - total and receive, over the REST requests (timed_requests): the counters of
          mlserver_start.py, each request's stay from its head parsed to its answer
          written less its waits for its body's bytes, and those waits.

        Both front ends, REST and gRPC, go through the data plane. The main process and
        the worker processes (parallel_workers >= 1, which instance_count always gives)
        write these metrics to Prometheus' multiprocess files (settings.json metrics_dir),
        which the metrics port sums; without workers MLServer would export only its own
        registry, without the runtime's metric, and this would answer None. The runtime's
        metric grows as an inference ends, MLServer's as the response leaves the data
        plane, so a reading taken under load may count the inference of the requests in
        flight ahead of their duration: a difference of two readings is off by at most
        those few requests' inference time."""
        return read_metrics(metrics_url, lambda text: parse_metrics(text, model_name))


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, model_name: str) -> ServerStats | None:
    """ServerStats of one model from MLServer's Prometheus text (the metrics of
    `server_stats`, summed over the model's versions); None while one of them is missing
    (MLServer's appear at the first request, the runtime's once the model is loaded).
    Raises ValueError on a sample whose value is not a number."""
    # The data plane labels its metrics `model`, the custom metrics API `model_name`; the
    # REST start-up's counters are the server's, unlabelled (0 before the first REST
    # request, or on a server started without them), and never required.
    wanted = {SUCCESS_METRIC: "model", f"{DURATION_METRIC}_sum": "model",
              f"{COMPUTE_METRIC}_sum": "model_name", REST_REQUESTS_METRIC: None,
              REST_STAY_METRIC: None, REST_RECEIVE_METRIC: None}
    totals = dict.fromkeys(wanted, 0.0)
    seen = set()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) not in wanted:
            continue
        name, labels, value = match.groups()
        label = wanted[name]
        if label is not None and dict(_LABEL.findall(labels or "")).get(label) != model_name:
            continue
        totals[name] += float(value)
        seen.add(name)
    if any(name not in seen for name, label in wanted.items() if label is not None):
        return None
    compute_s = totals[f"{COMPUTE_METRIC}_sum"]
    queue_s = max(totals[f"{DURATION_METRIC}_sum"] - compute_s, 0.0)
    return ServerStats(requests=int(totals[SUCCESS_METRIC]), queue_ns=round(queue_s * 1e9),
                       compute_ns=round(compute_s * 1e9),
                       total_ns=round(totals[REST_STAY_METRIC] * 1e9),
                       receive_ns=round(totals[REST_RECEIVE_METRIC] * 1e9),
                       # only the REST requests: a point over gRPC gets no handling time
                       timed_requests=int(totals[REST_REQUESTS_METRIC]))


def _require_cuda_provider(env: str, device: str) -> None:
    """Refuse, before MLServer starts, a GPU the side environment's ONNX Runtime cannot use
    (its runtime would refuse too, but MLServer only logs a model that fails to load)."""
    import subprocess

    probe = subprocess.run(
        [str(sidevenv.python(env)), "-c",
         "import json, onnxruntime; print(json.dumps(onnxruntime.get_available_providers()))"],
        capture_output=True, text=True, timeout=120, env=_server_env(), check=False)
    providers = json.loads(probe.stdout) if probe.returncode == 0 else []
    if "CUDAExecutionProvider" not in providers:
        raise InferBenchError(
            f"MLServer was asked to run on {device}, but ONNX Runtime in its side environment "
            f"{env!r} offers {providers or probe.stderr.strip()[-300:]!r}; fix: a GPU worker "
            "with the NVIDIA driver and the CUDA 12 libraries onnxruntime-gpu needs, or set "
            'hardware to "cpu"')


def _version(env: str) -> str:
    """`mlserver X (onnxruntime Y)` as installed in side environment `env`."""
    versions = _side_versions(env)
    if not versions:  # not created yet: ask again next time rather than cache "unknown"
        _side_versions.cache_clear()
    runtime = next((f"{dist} {versions[dist]}" for dist in ("onnxruntime-gpu", "onnxruntime")
                    if dist in versions), "onnxruntime unknown")
    return f"mlserver {versions.get('mlserver', 'unknown')} ({runtime})"


@functools.cache
def _side_versions(env: str) -> dict[str, str]:
    # A subprocess in the side environment (~0.1 s), once per process.
    return sidevenv.distribution_versions(env, ["mlserver", "onnxruntime", "onnxruntime-gpu"])
