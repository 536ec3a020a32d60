"""The pipeline's stages, one module each; `inferbench stage NAME` dispatches here."""

from __future__ import annotations

from collections.abc import Callable


def _lazy(module: str, attr: str = "run") -> Callable:
    def call(*args):
        import importlib

        return getattr(importlib.import_module(f"inferbench.stages.{module}"), attr)(*args)

    call.__name__ = f"{module}.{attr}"
    return call


STAGES: dict[str, Callable] = {
    "generate": _lazy("generate"),
    "convert": _lazy("convert"),
    "serve": _lazy("serve"),
    "load": _lazy("load"),
    "collect": _lazy("collect"),
    "stop": _lazy("serve", "stop"),
    "analyze": _lazy("analyze"),
    "configs": _lazy("measure", "configs"),
    "measure": _lazy("measure"),
}
PLATFORM_STAGES = ("serve", "load", "collect", "stop", "configs", "measure")
# Stages that take a server configuration index (`--config`); collect and stop default to
# every configuration of the platform.
CONFIG_STAGES = ("serve", "load", "collect", "stop", "measure")
