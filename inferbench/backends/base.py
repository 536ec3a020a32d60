"""The one small interface every serving platform implements.

A backend knows how to lay out its model repository and which process to start; the
shared lifecycle (spawn in its own process group, wait for readiness, time the cold start,
stop the whole group) lives in `inferbench.backends.process`, so every platform is started,
timed and stopped the same way. Each backend class carries its platform's facts in one
`PlatformDescriptor` (inferbench/platforms.py): the format it serves, the transports it
speaks with the load generator's client for each, its start-up estimate and the devices it
runs on. The load stage and the conformance suite talk to every platform through those
clients; the spec, the scheduler and the result queries read the same descriptor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from inferbench.backends.server_stats import ServerStats, read_model_stats
from inferbench.models.signature import SINGLE_INPUT, TensorSpec
from inferbench.platforms import DeviceKind, ModelFormat, PlatformDescriptor, Transport


@dataclass(frozen=True)
class ServerConfig:
    """Server-side batching and instance knobs of one serving configuration.

    Each platform maps them onto its own settings (Triton dynamic_batching and instance_group,
    TorchServe batch_size / max_batch_delay, MLServer adaptive batching, the FastAPI server's
    own batcher). The batcher's largest batch is `ServeContext.max_batch_size`.
    """

    dynamic_batching: bool = False
    max_queue_delay_us: int = 0          # how long the batcher waits to fill a batch
    preferred_batch_sizes: tuple[int, ...] = ()
    instance_count: int = 1              # model instances (workers) serving in parallel
    openvino_precision: str = "f32"      # OpenVINO's inference precision (f32 or bf16)


@dataclass(frozen=True)
class ServeContext:
    """Everything a backend needs to prepare and start one server."""

    model_name: str           # name the model is served under (V2 URL path)
    model_path: Path          # the converted artifact of `Backend.model_format`
    inputs: tuple[TensorSpec, ...]  # the model's input signature (models/signature.py)
    num_outputs: int
    workdir: Path             # this platform's directory inside the run directory
    http_port: int
    grpc_port: int
    metrics_port: int
    max_batch_size: int       # largest batch the benchmark will send
    threads: int = 1          # inference threads per model instance (same on every platform)
    device: str = "cpu"       # where to run the model: the spec's hardware (cpu, gpu:<index>)
    server: ServerConfig = field(default_factory=ServerConfig)
    processing: ServerProcessing = field(default_factory=lambda: ServerProcessing())
    cpus: tuple[int, ...] = ()  # the CPUs the server is kept on (resources.server_cpus); ()
                                # anywhere. The serve stage applies them to its process.


@dataclass(frozen=True)
class ServerProcessing:
    """Pre- and post-processing the server does around the model (spec.pipeline on the
    server; only for a platform whose descriptor has server_processing): the FastAPI
    server's --preprocess and --postprocess values (inferbench/processing/serving.py)."""

    preprocess: str | None = None   # image:H,W | text:TOKENIZER.json:LENGTH
    postprocess: str | None = None  # topk:K


@dataclass
class LaunchPlan:
    """The server process to start: argv, extra environment, and the readiness URL path."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # A serving image of the platform's own (docker runtime only), e.g. the official Triton
    # image on GPU hosts; None: the server runs from the stage image like the stages.
    image: str | None = None
    ready_path: str = "/v2/health/ready"
    cwd: Path | None = None


@dataclass(frozen=True)
class ServingDevice:
    """Where a running server runs its model: "cpu" or "gpu:<index>", and on a GPU the
    library doing it where the server says (ONNX Runtime's active execution provider,
    torch's device, Triton's instance kind)."""

    device: str
    accelerator: str | None = None


# Where a server that has no metadata endpoint for it (TorchServe's handler, the MLServer
# runtime) reports the device its loaded model runs on, as JSON {"device": "cpu" |
# "gpu:<index>", "accelerator": the GPU library, on a GPU, ...}, written by the server's own
# worker once the model is on that device.
DEVICE_REPORT_FILE = "serving-device.json"


def device_report_path(ctx: ServeContext) -> Path:
    return ctx.workdir / DEVICE_REPORT_FILE


def clear_device_report(ctx: ServeContext) -> None:
    """Before a server starts: a report left by an earlier server must not speak for it."""
    device_report_path(ctx).unlink(missing_ok=True)


def read_device_report(ctx: ServeContext, platform: str, wait_s: float = 60.0
                       ) -> ServingDevice:
    """What the running server's worker reported (device_report_path). Waited for: a server
    may call itself healthy while its worker still loads the model (TorchServe's /ping
    does)."""
    import json
    import time

    from inferbench.errors import InferBenchError

    path = device_report_path(ctx)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            report = json.loads(path.read_text())
            return ServingDevice(str(report["device"]), report.get("accelerator"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if time.monotonic() > deadline:
                raise InferBenchError(
                    f"the {platform} server is ready but its worker did not report where the "
                    f"model runs in {path} within {wait_s:.0f} s ({exc}); fix: see the "
                    "server's log") from None
        time.sleep(0.1)


class Backend(ABC):
    """A serving platform. Each subclass is listed in `inferbench.backends.backend_classes`
    under its `name` (a `Platform` value) and describes itself in `descriptor`."""

    name: ClassVar[str]
    descriptor: ClassVar[PlatformDescriptor]
    input_name: ClassVar[str] = SINGLE_INPUT
    output_name: ClassVar[str] = "output"

    @abstractmethod
    def prepare(self, ctx: ServeContext) -> None:
        """Write the model repository / config the server reads, under ctx.workdir."""

    @abstractmethod
    def launch_plan(self, ctx: ServeContext) -> LaunchPlan:
        """The process that serves ctx.model_name on ctx.http_port."""

    @abstractmethod
    def version(self) -> str:
        """The platform's version string, stored as provenance."""

    def version_on(self, device: str) -> str:
        """The version string of the build that serves on `device` (a platform with a
        separate GPU build says which)."""
        return self.version()

    # Shorthands for the descriptor's facts that the stages read on every run.
    @property
    def model_format(self) -> ModelFormat:
        return self.descriptor.model_format

    @property
    def protocol(self) -> str:
        """The load generator's client of the HTTP endpoint."""
        return self.descriptor.protocols[Transport.HTTP]

    @property
    def grpc_protocol(self) -> str | None:
        """The client of the gRPC endpoint, or None where the platform serves no gRPC."""
        return self.descriptor.protocols.get(Transport.GRPC)

    def ready_path(self, ctx: ServeContext) -> str:
        """Readiness means the model itself is loaded, not only the server's HTTP port."""
        return f"/v2/models/{ctx.model_name}/ready"

    def serving_device(self, ctx: ServeContext, base_url: str) -> ServingDevice:
        """Where the running server really runs the model ("cpu" or "gpu:<index>"), as the
        analysis labels, prices and meters it, and the GPU library running it where the
        server names one. A platform that can only run on the CPU says so; one that can use
        a GPU asks its server (ask_serving_device)."""
        if set(self.descriptor.devices) == {DeviceKind.CPU}:
            return ServingDevice(DeviceKind.CPU.value)
        return self.ask_serving_device(ctx, base_url)

    def ask_serving_device(self, ctx: ServeContext, base_url: str) -> ServingDevice:
        """serving_device of a platform that can use a GPU: asked of its running server."""
        raise NotImplementedError(f"{self.name} can run on {sorted(self.descriptor.devices)}: "
                                  "its backend must ask the server where the model runs")

    # Whether the server answers GET /v2/models/{name}/stats (backends/server_stats.py).
    has_model_stats: ClassVar[bool] = False

    def server_stats(self, base_url: str, model_name: str, metrics_url: str | None = None
                     ) -> ServerStats | None:
        """Cumulative queue/compute counters of the running server, or None where the
        platform exposes none (then the report shows client-side latency only).
        `metrics_url` is the server's metrics port (http://HOST:PORT), for platforms that
        count on a Prometheus endpoint."""
        if not self.has_model_stats:
            return None
        return read_model_stats(base_url, model_name)
