"""The benchmark pipeline's stages and how they connect: the one place these facts live.

The DAG, the stage operator, the `inferbench stage` command and their help texts derive from
this module; it imports nothing heavy, so a DAG parse can read it. What a stage does lives in
`inferbench.stages`; how a stage process hands its spec and result across the process (or
container) boundary is the contract at the bottom of this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from inferbench.budgets import MAX_PLANNED_S
from inferbench.errors import InferBenchError
from inferbench.platforms import Platform

BENCHMARK_DAG_ID = "inferbench_benchmark"  # the DAG that runs these stages


class Stage(StrEnum):
    """A step of one benchmark run; `inferbench stage NAME` runs it."""

    GENERATE = "generate"
    CONVERT = "convert"
    CONFIGS = "configs"
    MEASURE = "measure"
    SERVE = "serve"
    LOAD = "load"
    COLLECT = "collect"
    STOP = "stop"
    ANALYZE = "analyze"


@dataclass(frozen=True)
class StageTraits:
    """What a stage takes and does, as the operator and the CLI check it."""

    module: str                  # inferbench.stages.<module>
    function: str = "run"        # the stage's entry point in that module
    takes_platform: bool = False  # runs for one serving platform (`--platform`)
    takes_config: bool = False   # runs for one server configuration (`--config`)
    # Starts or stops serving processes (containers in the docker runtime): only these get
    # the Docker socket.
    controls_servers: bool = False
    summary: str = ""
    # The task's execution_timeout: a hung stage (a server that never answers, a stuck
    # database) fails instead of holding its pool slot for ever.
    timeout_s: float = 3600.0
    # Retries of a stage that is idempotent and fails only on passing trouble (the results
    # DB restarting): collect, analyze and stop. The others fail for reasons a retry would
    # only repeat, or (measure) re-measure.
    retries: int = 0


# The longest measure task: a run's whole load budget, plus an hour to start and stop.
MEASURE_TIMEOUT_S = MAX_PLANNED_S + 3600.0
RETRY_DELAY_S = 15.0  # doubled at each retry
# The longest a benchmark's DAG run may take (Airflow fails it after that): every family's
# whole time cap, plus a day for conversions, server starts and retries. A run still
# `running` in the results database after it has ended: see writer.abort_abandoned_runs.
RUN_TIMEOUT_S = MAX_PLANNED_S + 24 * 3600.0


STAGE_TRAITS: dict[Stage, StageTraits] = {
    Stage.GENERATE: StageTraits("generate", summary="build the model and register it"),
    Stage.CONVERT: StageTraits("convert", summary="export each format and check its outputs"),
    Stage.CONFIGS: StageTraits("measure", "configs", takes_platform=True, timeout_s=600.0,
                               summary="list the platform's server configurations"),
    Stage.MEASURE: StageTraits("measure", takes_platform=True, takes_config=True,
                               controls_servers=True, timeout_s=MEASURE_TIMEOUT_S,
                               summary="serve, load and stop one server configuration"),
    Stage.SERVE: StageTraits("serve", takes_platform=True, takes_config=True,
                             controls_servers=True,
                             summary="start the server, time its cold start"),
    Stage.LOAD: StageTraits("load", takes_platform=True, takes_config=True,
                            timeout_s=MEASURE_TIMEOUT_S,
                            summary="drive the workload at the running server"),
    # collect and stop default to every configuration of the platform.
    Stage.COLLECT: StageTraits("collect", takes_platform=True, takes_config=True, retries=2,
                               summary="store samples, server stats and provenance"),
    Stage.STOP: StageTraits("serve", "stop", takes_platform=True, takes_config=True,
                            controls_servers=True, timeout_s=1800.0, retries=2,
                            summary="stop the platform's servers"),
    Stage.ANALYZE: StageTraits("analyze", retries=2,
                               summary="verdicts, recommendations, the report"),
}

PLATFORM_STAGES: tuple[Stage, ...] = tuple(s for s, t in STAGE_TRAITS.items() if t.takes_platform)
CONFIG_STAGES: tuple[Stage, ...] = tuple(s for s, t in STAGE_TRAITS.items() if t.takes_config)
SERVER_STAGES: tuple[Stage, ...] = tuple(s for s, t in STAGE_TRAITS.items() if t.controls_servers)


class StageArgumentError(InferBenchError, ValueError):
    """A stage was asked for with arguments it does not take. A ValueError too, so that an
    operator built with them fails the DAG parse the way Airflow's own operators do."""


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(str(name)) for name in names)  # 'load', not <Stage.LOAD: 'load'>


def validate_stage_args(stage: str, platform: str | None = None,
                        config: int | None = None) -> Stage:
    """Check one stage invocation (the CLI's and the operator's); return the Stage.

    Raises StageArgumentError naming the argument, the bad value, what is allowed and the fix.
    The messages name both spellings of an argument (`--platform` on the command line,
    `platform=` on the operator): the same check guards both."""
    try:
        checked = Stage(stage)
    except ValueError:
        raise StageArgumentError(
            f"unknown stage {stage!r}; expected one of {_names(Stage)}; fix: use one of "
            "those names (`inferbench stage --help` says what each does)") from None
    traits = STAGE_TRAITS[checked]
    if traits.takes_platform and platform is None:
        raise StageArgumentError(
            f"stage {checked.value!r} needs a platform (--platform / platform=); fix: pass "
            "one of the spec's platforms")
    if not traits.takes_platform and platform is not None:
        raise StageArgumentError(
            f"stage {checked.value!r} takes no platform (--platform / platform=), got "
            f"{platform!r}; only {_names(PLATFORM_STAGES)} do; fix: drop it")
    if platform is not None and platform not in {p.value for p in Platform}:
        raise StageArgumentError(
            f"unknown platform {platform!r} (--platform / platform=); expected one of "
            f"{_names(Platform)}; fix: use one of those names")
    if config is not None:
        if not traits.takes_config:
            raise StageArgumentError(
                f"stage {checked.value!r} takes no server configuration (--config / "
                f"config=), got {config!r}; only {_names(CONFIG_STAGES)} do; fix: drop it")
        # bool is an int, but True is no configuration index
        if isinstance(config, bool) or not isinstance(config, int) or config < 0:
            raise StageArgumentError(
                f"invalid server configuration index {config!r} (--config / config=); "
                "expected an integer >= 0, an index into the spec's server grid; fix: pass "
                "one that the `configs` stage lists")
    return checked


def stage_args(stage: str, run_id: str, platform: str | None = None,
               config: int | None = None) -> list[str]:
    """The `inferbench` arguments that run one stage: what the operator runs in a child
    process or as the stage container's command."""
    args = ["stage", str(stage), "--run", run_id]
    args += ["--platform", platform] if platform is not None else []
    return args + (["--config", str(config)] if config is not None else [])


def stage_help() -> str:
    """One line per stage, with what it takes: the `inferbench stage` help."""
    lines = []
    for stage, traits in STAGE_TRAITS.items():
        takes = [opt for opt, on in (("--platform", traits.takes_platform),
                                     ("--config", traits.takes_config)) if on]
        lines.append(f"  {stage.value:<9} {traits.summary}"
                     + (f" ({' '.join(takes)})" if takes else ""))
    return "stages:\n" + "\n".join(lines)


# The stage-process contract: the spec travels in SPEC_ENV (the first stage writes it into
# the run directory; later stages read it from there), the results database in DB_ENV, and
# the stage's result comes back as its last stdout line starting with RESULT_PREFIX.
SPEC_ENV = "INFERBENCH_SPEC_JSON"
DB_ENV = "INFERBENCH_DB_URL"
RESULT_PREFIX = "RESULT "


def result_line(result: Any) -> str:
    """The stdout line that hands a stage's result to the operator (which pushes it to XCom)."""
    return RESULT_PREFIX + json.dumps(result, default=str)


def parse_result_line(line: str) -> tuple[bool, Any]:
    """(True, result) when `line` is a result line, else (False, None)."""
    line = line.strip()
    if not line.startswith(RESULT_PREFIX):
        return False, None
    return True, json.loads(line[len(RESULT_PREFIX):])
