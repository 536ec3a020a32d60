"""The pipeline's stages, one module each; `inferbench stage NAME` dispatches here.

Which function runs a stage, and what it takes, is `inferbench.pipeline.STAGE_TRAITS`; this
package only imports the stage's module when the stage runs (each pulls in torch, a backend
or the database)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from inferbench.pipeline import (
    CONFIG_STAGES,
    PLATFORM_STAGES,
    STAGE_TRAITS,
    Stage,
    StageTraits,
    validate_stage_args,
)

__all__ = ["CONFIG_STAGES", "PLATFORM_STAGES", "STAGES", "run_stage"]


def _lazy(traits: StageTraits) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        module = importlib.import_module(f"{__name__}.{traits.module}")
        return getattr(module, traits.function)(*args)

    call.__name__ = f"{traits.module}.{traits.function}"
    return call


# Keyed by Stage, a str enum: STAGES["serve"] finds Stage.SERVE.
STAGES: dict[Stage, Callable[..., Any]] = {stage: _lazy(traits)
                                           for stage, traits in STAGE_TRAITS.items()}


def run_stage(stage: str, ctx: Any, platform: str | None = None,
              config: int | None = None) -> Any:
    """Run one stage with the arguments its traits say it takes (checked first)."""
    checked = validate_stage_args(stage, platform, config)
    args = [ctx] + ([platform] if platform is not None else [])
    return STAGES[checked](*args, *([config] if config is not None else []))
