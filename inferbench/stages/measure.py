"""measure: one server configuration end to end on the machine: serve -> load -> stop.
The load stage runs every batch size's load ladder on this one server start.

The DAG maps this stage over a platform's server configurations, one at a time. Serving
and loading live in one task so that two configurations' servers can never overlap on the
machine, whatever order a scheduler (or `dag.test`) picks for the mapped task instances;
the server is stopped here whatever happens, and the platform's teardown task stops any
that a killed task left behind. `configs` lists the configurations the DAG maps over.

The grid is resolved once, at the top of `run`; serve, load and stop get the resolved
configurations, and load gets the endpoint serve returned.
"""

from __future__ import annotations

from typing import TypedDict

from inferbench.server_grid import pick, resolve_configs, server_configs
from inferbench.stages import load, serve
from inferbench.stages.common import LadderSummary, StageContext
from inferbench.stages.load import PointBrief


class ConfigKwargs(TypedDict):
    """One mapped `measure` task's keyword arguments: the keys are the operator's own
    parameter names (the DAG passes the list to `expand_kwargs`)."""

    config: int
    config_label: str


class MeasureResult(TypedDict):
    platform: str
    config: int
    label: str
    cold_start_s: float
    points: list[PointBrief]
    ladders: list[LadderSummary]  # per batch size: how its load ladder ended
    stopped: bool        # whether the server was still running when it was stopped


def configs(ctx: StageContext, platform: str) -> list[ConfigKwargs]:
    """The mapping input: one entry per server configuration (the operator's kwargs)."""
    return [{"config": c.index, "config_label": c.label} for c in server_configs(ctx.spec)]


def run(ctx: StageContext, platform: str, config: int = 0) -> MeasureResult:
    every = resolve_configs(ctx.spec, ctx.run_dir, platform)
    resolved = pick(every, config)
    # A measure task killed hard (SIGKILL, a lost worker) cannot stop its server; the
    # platform's teardown would, but only after the remaining configurations. So first stop
    # whatever server an earlier configuration of this platform, or an earlier attempt at
    # this one (a retry, a cleared task), left running: one server on the machine at a time.
    # serve.start stops this configuration's own earlier server.
    serve.stop_servers(ctx, platform, [r for r in every if r.index != resolved.index])
    try:
        endpoint = serve.start(ctx, resolved)
        measured = load.drive(ctx, resolved, endpoint)
    finally:
        stopped = serve.stop_servers(ctx, platform, [resolved])
    return {"platform": platform, "config": config, "label": resolved.label,
            "cold_start_s": endpoint["cold_start_s"], "points": measured["points"],
            "ladders": measured["ladders"], "stopped": stopped["stopped"]}
