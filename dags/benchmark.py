"""InferBench benchmark: generate -> convert -> per platform (configs -> measure, mapped over
the spec's server configurations -> collect, with a teardown that always stops the servers)
-> analyze.

Trigger it from the UI (the form is the benchmark spec), over the REST API with the spec as
DAG-run conf, or with `inferbench run SPEC.json`. Platforms run one after the other, and
within a platform the server configurations (the spec's `server` grid: batching, queue
delay, instances) run one at a time, so two servers never share the machine; a platform
the spec does not list is skipped. Nothing here touches a database or imports heavy
libraries at parse time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, TaskGroup, TriggerRule

from inferbench.pipeline import (
    BENCHMARK_DAG_ID,
    RETRY_DELAY_S,
    RUN_TIMEOUT_S,
    STAGE_TRAITS,
    Stage,
)
from inferbench.platforms import Platform
from inferbench.scheduling.workers import MAX_ACTIVE_RUNS
from operators.params import spec_params
from operators.run_callbacks import mark_run_aborted
from operators.stage import StageOperator

# One entry per serving platform, benchmarked in this order.
PLATFORMS: list[str] = [p.value for p in Platform]


def task_policy(stage: Stage) -> dict[str, Any]:
    """A stage's timeout and retries (with backoff), from its traits."""
    traits = STAGE_TRAITS[stage]
    policy: dict[str, Any] = {"execution_timeout": timedelta(seconds=traits.timeout_s),
                              "retries": traits.retries}
    if traits.retries:
        policy.update(retry_delay=timedelta(seconds=RETRY_DELAY_S),
                      retry_exponential_backoff=True)
    return policy


def stage_task(stage: Stage, **kwargs: Any) -> StageOperator:
    """One stage as one task, named after the stage."""
    return StageOperator(task_id=stage.value, stage=stage, **task_policy(stage), **kwargs)


def platform_group(platform: str) -> tuple[StageOperator, list]:
    """configs -> measure[config] (one at a time) -> collect -> stop (teardown).

    `measure` serves, loads and stops one configuration inside one task: Airflow cannot
    order mapped task-group instances, so a separate serve task of the next configuration
    could start before this one's teardown; one task per configuration, at most one running
    (max_active_tis_per_dagrun=1), keeps a single server on the worker; runs on other
    workers measure at the same time (the worker's pool of one slot keeps one task at a
    time on each worker)."""
    with TaskGroup(group_id=platform):
        # none_failed: runs after the previous platform's teardown even if that platform
        # was skipped, but never on a failed conversion.
        configs = stage_task(Stage.CONFIGS, platform=platform,
                             trigger_rule=TriggerRule.NONE_FAILED)
        measure = StageOperator.partial(
            task_id=Stage.MEASURE.value, stage=Stage.MEASURE, platform=platform,
            max_active_tis_per_dagrun=1,
            map_index_template="{{ task.config_label }}", **task_policy(Stage.MEASURE),
        ).expand_kwargs(configs.output)
        # all_done: what the configurations that did run measured is kept.
        collect = stage_task(Stage.COLLECT, platform=platform, trigger_rule=TriggerRule.ALL_DONE)
        stop = stage_task(Stage.STOP, platform=platform)
        configs >> measure >> collect >> stop.as_teardown(setups=configs)
    return configs, [collect, stop]


with DAG(
    dag_id=BENCHMARK_DAG_ID,
    description="Benchmark a generated model on serving platforms under a workload",
    schedule=None,
    catchup=False,
    # Runs wait in their workers' pools, ordered by the scheduling policy (workers.py).
    max_active_runs=MAX_ACTIVE_RUNS,
    # A run that ends without its analysis is marked aborted in the results database.
    dagrun_timeout=timedelta(seconds=RUN_TIMEOUT_S),
    on_failure_callback=mark_run_aborted,
    params=spec_params(),
    tags=["inferbench"],
    doc_md=__doc__,
) as dag:
    generate = stage_task(Stage.GENERATE)
    convert = stage_task(Stage.CONVERT)
    # all_done: partial results still count.
    analyze = stage_task(Stage.ANALYZE, trigger_rule=TriggerRule.ALL_DONE)
    generate >> convert

    previous_stop = None
    for name in PLATFORMS:
        first, (collect, stop) = platform_group(name)
        convert >> first
        if previous_stop is not None:
            previous_stop >> first
        previous_stop = stop
        [collect, stop] >> analyze
