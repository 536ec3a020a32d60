"""The pipeline's stages, one module each; `inferbench stage NAME` dispatches here.

Which function runs a stage, and what it takes, is `inferbench.pipeline.STAGE_TRAITS`; this
package only imports the stage's module when the stage runs (each pulls in torch, a backend
or the database)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from inferbench.errors import InferBenchError
from inferbench.pipeline import (
    CONFIG_STAGES,
    PLATFORM_STAGES,
    STAGE_TRAITS,
    Stage,
    StageTraits,
    validate_stage_args,
)

__all__ = ["CONFIG_STAGES", "PLATFORM_STAGES", "STAGES", "run_stage"]


def _database_unreachable(exc: Exception, ctx: Any) -> InferBenchError | None:
    """The error to raise for a stage that could not reach the results database, or None
    when `exc` is something else."""
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import OperationalError
    except ImportError:
        return None
    # Connection failures are the drivers' plain OperationalError; their subclasses
    # (a deadlock, a query cancelled) are the database answering, and keep their own error.
    if not isinstance(exc, OperationalError) or (
            exc.orig is not None and type(exc.orig).__name__ != "OperationalError"):
        return None
    url = getattr(ctx, "db_url", None)
    where = make_url(url).render_as_string(hide_password=True) if url else "(unknown)"
    first = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
    return InferBenchError(
        f"the results database {where} could not be reached ({first}); fix: start PostgreSQL "
        "(`inferbench up` on the embedded default, the `postgres` service in the cluster) "
        "and run the task again: what this run measured stays in its run directory and is "
        "stored then")


def _lazy(traits: StageTraits) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        module = importlib.import_module(f"{__name__}.{traits.module}")
        try:
            return getattr(module, traits.function)(*args)
        except Exception as exc:
            clear = _database_unreachable(exc, args[0] if args else None)
            if clear is None:
                raise
            raise clear from exc

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
