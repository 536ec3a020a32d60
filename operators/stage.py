"""The stage operator: runs `inferbench stage <name> --run <id>` as one Airflow task.

The stage code itself knows nothing of Airflow, and this operator knows nothing of
processes or containers: it checks its arguments when the DAG is parsed, skips a platform
the run's spec does not list, and hands the call to the runner of the task's runtime
(operators/runners.py), which streams the stage's output into the task log and returns the
stage's result, pushed to XCom. The stages, what each takes and the contract between the
operator and the stage process are `inferbench.pipeline`'s.

The runtime is the operator's `runtime` argument, else the worker's INFERBENCH_RUNTIME
environment (the cluster sets it to docker), else local.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from inferbench.containers import RUNTIME_ENV, RUNTIMES, runtime_from_env
from inferbench.pipeline import validate_stage_args
from operators.runners import StageCall, StageRunner, runner_for
from operators.scheduling import record_decision

__all__ = ["StageOperator"]


class StageOperator(BaseOperator):
    """Run one benchmark stage for the DAG run's spec (the DAG params).

    :param stage: an `inferbench.pipeline.Stage` (or its name); what it takes (a platform,
        a server configuration) is its entry in `inferbench.pipeline.STAGE_TRAITS`.
    :param platform: the serving platform, for the stages that take one; the task is
        skipped when the run's spec does not list it.
    :param runtime: where the stage runs: 'local' (a child process on the worker) or
        'docker' (the stage image); None reads INFERBENCH_RUNTIME on the worker at run time.
    :param image: the stage image for the docker runtime; None reads INFERBENCH_IMAGE.
        Templated.
    :param config: server configuration index, for the stages that take one; the DAG maps
        `measure` over the `configs` stage's output.
    :param config_label: the configuration's label, shown as the mapped task's name.
    """

    # The stage, platform and configuration are checked when the DAG is parsed, so they are
    # plain values (a mapped task gets its configuration from expand_kwargs, not a template).
    template_fields: Sequence[str] = ("image",)
    ui_color = "#e8f4fd"

    def __init__(self, *, stage: str, platform: str | None = None, runtime: str | None = None,
                 image: str | None = None, config: int | None = None,
                 config_label: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = validate_stage_args(stage, platform, config)
        if runtime is not None and runtime not in RUNTIMES:
            raise ValueError(f"Invalid `runtime` value {runtime!r}, expected one of "
                             f"{', '.join(map(repr, RUNTIMES))}; fix: pick one, or leave it "
                             f"unset to read {RUNTIME_ENV} on the worker.")
        self.platform, self.runtime, self.image = platform, runtime, image
        self.config, self.config_label = config, config_label
        self._runner: StageRunner | None = None

    def make_runner(self, runtime: str) -> StageRunner:
        return runner_for(runtime, image=self.image)

    def execute(self, context: Any) -> Any:
        # The cluster policy keeps its placement decision on the Airflow side; the run's
        # tasks write it to the results DB (idempotent: only the first one writes).
        record_decision(context)
        params = context["params"]
        spec = params.dump() if hasattr(params, "dump") else dict(params)
        if self.platform and self.platform not in spec.get("platforms", []):
            raise AirflowSkipException(f"platform {self.platform!r} is not in this run's spec")
        self._runner = self.make_runner(self.runtime or runtime_from_env())
        call = StageCall(stage=self.stage, run_id=context["run_id"], spec=spec,
                         platform=self.platform, config=self.config)
        return self._runner.run(call, self.log)

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.kill()
