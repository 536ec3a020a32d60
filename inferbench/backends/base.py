"""The one small interface every serving platform implements.

A backend knows how to lay out its model repository and which process to start; the
shared lifecycle (spawn in its own process group, wait for readiness, time the cold start,
stop the whole group) lives in `inferbench.backends.process`, so every platform is started,
timed and stopped the same way. All platforms in the spine speak the KServe V2 HTTP
protocol, so one load-generator client serves them all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from inferbench.spec import ModelFormat


@dataclass(frozen=True)
class ServeContext:
    """Everything a backend needs to prepare and start one server."""

    model_name: str           # name the model is served under (V2 URL path)
    model_path: Path          # the converted artifact of `Backend.model_format`
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    num_outputs: int
    workdir: Path             # this platform's directory inside the run directory
    http_port: int
    grpc_port: int
    metrics_port: int
    max_batch_size: int       # largest batch the benchmark will send
    threads: int = 1          # inference threads per model instance (same on every platform)


@dataclass
class LaunchPlan:
    """The server process to start: argv, extra environment, and the readiness URL path."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/v2/health/ready"
    cwd: Path | None = None


class Backend(ABC):
    """A serving platform. Subclasses register themselves in `inferbench.backends.REGISTRY`."""

    name: ClassVar[str]
    model_format: ClassVar[ModelFormat]
    protocol: ClassVar[str] = "kserve_v2_http"
    input_name: ClassVar[str] = "input"
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

    def ready_path(self, ctx: ServeContext) -> str:
        """Readiness means the model itself is loaded, not only the server's HTTP port."""
        return f"/v2/models/{ctx.model_name}/ready"
