"""The DAG files import cleanly (no DB or heavy import at parse time) and have the shape
the brief fixes: generate -> convert -> per platform serve/load/collect + teardown -> analyze."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from inferbench.pipeline import BENCHMARK_DAG_ID, STAGE_TRAITS, Stage
from inferbench.scheduling.workers import MAX_ACTIVE_RUNS
from inferbench.spec import Platform, json_schema


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "inferbench_benchmark" in dagbag.dags


def test_benchmark_dag_shape(dagbag):
    dag = dagbag.dags[BENCHMARK_DAG_ID]
    # Every task is a stage, named after it (serve and load run inside measure); the
    # teardown is a stage that stops servers.
    assert {t.task_id.rsplit(".", 1)[-1] for t in dag.tasks} <= set(Stage)
    assert all(t.task_id.rsplit(".", 1)[-1] == t.stage for t in dag.tasks
               if type(t).__name__ == "StageOperator")
    assert dag.get_task("convert").upstream_task_ids == {"generate"}
    for platform in Platform:
        p = platform.value
        configs, stop = dag.get_task(f"{p}.configs"), dag.get_task(f"{p}.stop")
        assert configs.is_setup and stop.is_teardown
        assert STAGE_TRAITS[stop.stage].controls_servers
        measure = dag.get_task(f"{p}.measure")
        # Mapped over the spec's server configurations, one running at a time.
        assert measure.upstream_task_ids == {f"{p}.configs"}
        assert type(measure).__name__ == "MappedOperator"
        assert measure.partial_kwargs["max_active_tis_per_dagrun"] == 1
        assert dag.get_task(f"{p}.collect").upstream_task_ids == {f"{p}.measure"}
        assert dag.get_task(f"{p}.collect").trigger_rule == "all_done"
        assert {f"{p}.collect", f"{p}.stop"} <= dag.get_task("analyze").upstream_task_ids
    # Platforms run one after the other: the second starts after the first's teardown.
    platforms = [p.value for p in Platform]
    for first, second in zip(platforms, platforms[1:], strict=False):
        assert f"{first}.stop" in dag.get_task(f"{second}.configs").upstream_task_ids
    assert dag.get_task("analyze").trigger_rule == "all_done"
    # The worker pools limit what runs at once; waiting runs are active, so the scheduling
    # policy orders them, and measurements on different workers run side by side.
    assert dag.max_active_runs == MAX_ACTIVE_RUNS > 1
    assert measure.partial_kwargs.get("max_active_tis_per_dag") is None


def test_every_task_has_its_stages_timeout_and_only_idempotent_stages_retry(dagbag):
    dag = dagbag.dags[BENCHMARK_DAG_ID]
    for task in dag.tasks:
        traits = STAGE_TRAITS[Stage(task.task_id.rsplit(".", 1)[-1])]
        if type(task).__name__ == "MappedOperator":  # measure: its policy sits in partial
            timeout, retries = (task.partial_kwargs["execution_timeout"],
                                task.partial_kwargs["retries"])
        else:
            timeout, retries = task.execution_timeout, task.retries
        assert timeout.total_seconds() == traits.timeout_s, task.task_id
        assert retries == traits.retries, task.task_id
    retrying = {s for s, t in STAGE_TRAITS.items() if t.retries}
    assert retrying == {Stage.COLLECT, Stage.ANALYZE, Stage.STOP}
    assert dag.get_task("analyze").retry_exponential_backoff


def test_params_come_from_the_spec_schema(dagbag):
    dag = dagbag.dags["inferbench_benchmark"]
    schema = json_schema()
    assert set(dag.params.keys()) == set(schema["properties"])
    platforms = dag.params.get_param("platforms")
    assert platforms.schema["items"]["enum"] == [p.value for p in Platform]
    assert platforms.description
    # The form's titles are words, not class names, and a nested section's help lists its
    # inner fields with their allowed values and bounds (its editor shows none).
    model, slo = dag.params.get_param("model"), dag.params.get_param("slo")
    assert (model.schema["title"], slo.schema["title"]) == ("Model", "SLO")
    assert dag.params.get_param("batch_sizes").schema["title"] == "Batch sizes"
    assert "family (one of fc, cnn, lstm, attention)" in model.description
    assert "depth (1..64; default 2)" in model.description
    assert "rate_rps (>0..100000)" in dag.params.get_param("workload").description
    # The defaults are a valid spec: an unattended trigger runs the demo.
    from inferbench.spec import parse_spec

    parse_spec(dag.params.dump())


def test_dag_file_parses_without_heavy_imports():
    code = ("import sys; import runpy; runpy.run_path(sys.argv[1]); "
            "heavy = [m for m in ('torch', 'onnxruntime', 'inferbench.perfdb', "
            "'matplotlib', 'tritonclient') if m in sys.modules]; print(heavy); "
            "sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags" / "benchmark.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dag_folder_parses_without_the_docker_sdk():
    """The local runtime never needs docker: parsing every DAG (what the dag-processor does
    every few tens of seconds) loads neither the docker SDK nor the Docker provider's
    operator or hook. Airflow's own provider discovery imports each installed provider's
    package and its `get_provider_info` whatever the DAGs do; nothing more may appear."""
    code = ("import sys; from airflow.dag_processing.dagbag import DagBag; "
            "bag = DagBag(dag_folder=sys.argv[1]); "
            "assert not bag.import_errors, bag.import_errors; "
            "assert 'inferbench_benchmark' in bag.dags; "
            "discovery = {'airflow.providers.docker', "
            "'airflow.providers.docker.get_provider_info'}; "
            "loaded = sorted(m for m in sys.modules if m == 'docker' "
            "or m.startswith(('docker.', 'airflow.providers.docker')) and m not in discovery); "
            "print(loaded); sys.exit(1 if loaded else 0)")
    env = {**os.environ, "INFERBENCH_RUNTIME": "local"}
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags")], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def test_bad_conf_is_rejected_by_the_params(dagbag):
    """Airflow validates trigger conf against the spec's schema before any task runs."""
    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags["inferbench_benchmark"]
    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match="tensorflow-lite"):
        params.update({"platforms": ["tensorflow-lite"]})
