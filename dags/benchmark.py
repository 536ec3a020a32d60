"""InferBench benchmark: generate -> convert -> per platform (serve -> load -> collect, with a
teardown that always stops the server) -> analyze.

Trigger it from the UI (the form is the benchmark spec), over the REST API with the spec as
DAG-run conf, or with `inferbench run SPEC.json`. Platforms run one after the other so two
servers never share the machine; a platform the spec does not list is skipped.
Nothing here touches a database or imports heavy libraries at parse time.
"""

from __future__ import annotations

from airflow.sdk import DAG, TaskGroup, TriggerRule

from inferbench.spec import Platform
from operators.params import spec_params
from operators.stage import StageOperator

with DAG(
    dag_id="inferbench_benchmark",
    description="Benchmark a generated model on serving platforms under a workload",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # one benchmark at a time on a single machine: runs never interfere
    params=spec_params(),
    tags=["inferbench"],
    doc_md=__doc__,
) as dag:
    generate = StageOperator(task_id="generate", stage="generate")
    convert = StageOperator(task_id="convert", stage="convert")
    analyze = StageOperator(task_id="analyze", stage="analyze",
                            trigger_rule=TriggerRule.ALL_DONE)  # partial results still count
    generate >> convert

    previous_stop = None
    for platform in Platform:
        with TaskGroup(group_id=platform.value):
            # none_failed: runs after the previous platform's teardown even if that platform
            # was skipped, but never on a failed conversion.
            serve = StageOperator(task_id="serve", stage="serve", platform=platform.value,
                                  trigger_rule=TriggerRule.NONE_FAILED)
            load = StageOperator(task_id="load", stage="load", platform=platform.value)
            collect = StageOperator(task_id="collect", stage="collect", platform=platform.value,
                                    trigger_rule=TriggerRule.ALL_DONE)
            stop = StageOperator(task_id="stop", stage="stop", platform=platform.value)
            serve >> load >> collect >> stop.as_teardown(setups=serve)
        convert >> serve
        if previous_stop is not None:
            previous_stop >> serve
        previous_stop = stop
        [collect, stop] >> analyze
