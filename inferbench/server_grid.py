"""The spec's server section expanded into concrete server configurations.

A pure function of the spec: the DAG maps over its result, the stages look a configuration
up by index, and the label (e.g. "db=on,delay=500us,inst=2") names it in the database and
the report. Order and labels are stable, so a configuration's index means the same thing in
every task of a run.

A stage resolves the configuration it works on once, into a `ResolvedConfig` (which
configuration, on which platform, and where its files live in the run directory), and hands
that object down to serve, load, stop and collect; nothing below the stage's entry point
expands the grid again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from inferbench.backends.base import ServerConfig
from inferbench.errors import InferBenchError
from inferbench.paths import ConfigFiles, RunDir
from inferbench.spec import BenchmarkSpec


class Knobs(TypedDict):
    """A configuration's knobs as JSON-ready values (stored beside its label)."""

    dynamic_batching: bool
    max_queue_delay_us: int
    preferred_batch_sizes: list[int]
    instance_count: int
    openvino_precision: str


@dataclass(frozen=True)
class LabelledConfig:
    index: int
    label: str
    config: ServerConfig

    def knobs(self) -> Knobs:
        """The knobs as JSON-ready values (stored beside the label)."""
        c = self.config
        return {"dynamic_batching": c.dynamic_batching,
                "max_queue_delay_us": c.max_queue_delay_us,
                "preferred_batch_sizes": list(c.preferred_batch_sizes),
                "instance_count": c.instance_count,
                "openvino_precision": c.openvino_precision}


def label(config: ServerConfig) -> str:
    parts = [f"db={'on' if config.dynamic_batching else 'off'}"]
    if config.dynamic_batching:
        parts.append(f"delay={config.max_queue_delay_us}us")
        if config.preferred_batch_sizes:
            parts.append("pref=" + "+".join(map(str, config.preferred_batch_sizes)))
    parts.append(f"inst={config.instance_count}")
    if config.openvino_precision != "f32":
        parts.append(f"ov={config.openvino_precision}")
    return ",".join(parts)


def server_configs(spec: BenchmarkSpec) -> list[LabelledConfig]:
    """Every server configuration the spec asks for, in grid order (see ServerSpec.grid)."""
    out = []
    for index, (batching, delay_us, preferred, instances) in enumerate(spec.server.grid()):
        config = ServerConfig(dynamic_batching=batching, max_queue_delay_us=delay_us,
                              preferred_batch_sizes=preferred, instance_count=instances,
                              openvino_precision=spec.server.openvino_precision)
        out.append(LabelledConfig(index, label(config), config))
    return out


def _check_index(labels: Sequence[str], index: int) -> None:
    if not 0 <= index < len(labels):
        raise InferBenchError(
            f"server configuration {index!r} does not exist: the spec expands to "
            f"{len(labels)} ({', '.join(labels)}); fix: use an index 0..{len(labels) - 1}")


def server_config(spec: BenchmarkSpec, index: int) -> LabelledConfig:
    configs = server_configs(spec)
    _check_index([c.label for c in configs], index)
    return configs[index]


@dataclass(frozen=True)
class ResolvedConfig:
    """One server configuration of one platform in one run, resolved once per task.

    Everything below a stage's entry point takes this instead of (spec, platform, index):
    which configuration it is (index, label, knobs) and where its files are. What exists
    only once a server starts (ports, the converted model's path) is resolved by the serve
    stage into the backend's `ServeContext`.
    """

    platform: str
    labelled: LabelledConfig
    files: ConfigFiles

    @property
    def index(self) -> int:
        return self.labelled.index

    @property
    def label(self) -> str:
        return self.labelled.label

    @property
    def server(self) -> ServerConfig:
        return self.labelled.config

    def knobs(self) -> Knobs:
        return self.labelled.knobs()


def resolve_configs(spec: BenchmarkSpec, run_dir: RunDir, platform: str
                    ) -> list[ResolvedConfig]:
    """Every configuration of `platform` in grid order, with its files (directories are
    created, as the stages always found them)."""
    return [ResolvedConfig(platform, c, run_dir.config_files(platform, c.index))
            for c in server_configs(spec)]


def resolve_config(spec: BenchmarkSpec, run_dir: RunDir, platform: str, index: int
                   ) -> ResolvedConfig:
    """One configuration; an index outside the grid is an error that lists the grid."""
    labelled = server_config(spec, index)
    return ResolvedConfig(platform, labelled, run_dir.config_files(platform, index))


def pick(configs: Sequence[ResolvedConfig], index: int) -> ResolvedConfig:
    """The configuration `index` of an already resolved grid (same error as
    `server_config` for an index outside it)."""
    _check_index([c.label for c in configs], index)
    return configs[index]
