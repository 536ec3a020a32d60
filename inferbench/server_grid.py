"""The spec's server section expanded into concrete server configurations.

A pure function of the spec: the DAG maps over its result, the stages look a configuration
up by index, and the label (e.g. "db=on,delay=500us,inst=2") names it in the database and
the report. Order and labels are stable, so a configuration's index means the same thing in
every task of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferbench.backends.base import ServerConfig
from inferbench.errors import InferBenchError
from inferbench.spec import BenchmarkSpec


@dataclass(frozen=True)
class LabelledConfig:
    index: int
    label: str
    config: ServerConfig

    def knobs(self) -> dict:
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


def server_config(spec: BenchmarkSpec, index: int) -> LabelledConfig:
    configs = server_configs(spec)
    if not 0 <= index < len(configs):
        raise InferBenchError(
            f"server configuration {index!r} does not exist: the spec expands to "
            f"{len(configs)} ({', '.join(c.label for c in configs)}); fix: use an index "
            f"0..{len(configs) - 1}")
    return configs[index]
