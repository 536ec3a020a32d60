"""measure: one server configuration end to end on the machine: serve -> load -> stop.

The DAG maps this stage over a platform's server configurations, one at a time. Serving
and loading live in one task so that two configurations' servers can never overlap on the
machine, whatever order a scheduler (or `dag.test`) picks for the mapped task instances;
the server is stopped here whatever happens, and the platform's teardown task stops any
that a killed task left behind. `configs` lists the configurations the DAG maps over.
"""

from __future__ import annotations

from inferbench.server_grid import server_config, server_configs
from inferbench.stages import load, serve
from inferbench.stages.common import StageContext


def configs(ctx: StageContext, platform: str) -> list[dict]:
    """The mapping input: one entry per server configuration (the operator's kwargs)."""
    return [{"config": c.index, "config_label": c.label} for c in server_configs(ctx.spec)]


def run(ctx: StageContext, platform: str, config: int = 0) -> dict:
    labelled = server_config(ctx.spec, config)
    # A measure task killed hard (SIGKILL, a lost worker) cannot stop its server; the
    # platform's teardown would, but only after the remaining configurations. So first stop
    # whatever server an earlier configuration of this platform left running.
    for other in server_configs(ctx.spec):
        if other.index != config:
            serve.stop(ctx, platform, other.index)
    try:
        endpoint = serve.run(ctx, platform, config)
        measured = load.run(ctx, platform, config)
    finally:
        stopped = serve.stop(ctx, platform, config)
    return {"platform": platform, "config": config, "label": labelled.label,
            "cold_start_s": endpoint["cold_start_s"], "points": measured["points"],
            "stopped": stopped["stopped"]}
