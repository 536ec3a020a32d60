"""The nightly sweep: the DAG file imports cleanly, and a sweep file expands into the
right runs (count, conf, order, placement); bad files are refused naming the field."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import ROOT

from inferbench.errors import InferBenchError
from inferbench.scheduling.sweep import expand_sweep, load_sweep, planned_placement
from inferbench.scheduling.workers import worker_names
from inferbench.spec import parse_spec

SMALL = {
    "name": "tiny",
    "base": {"formats": ["onnx"], "warmup_s": 1, "min_duration_s": 5, "min_requests": 50,
             "max_duration_s": 20, "slo": {"percentile": 99, "latency_ms": 50},
             "workload": {"arrival": "poisson", "rate_rps": 1, "seed": 3}},
    "grid": {"models": [{"family": "fc", "depth": 1, "width": 8, "input_shape": [4]},
                        {"family": "fc", "depth": 3, "width": 8, "input_shape": [4]}],
             "platforms": ["onnxruntime", "triton"],
             "batch_sizes": [1, 4],
             "rates_rps": [5, 20]},
}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_sweep_dag_imports_with_cron_and_param(dagbag):
    assert dagbag.import_errors == {}
    dag = dagbag.dags["inferbench_nightly_sweep"]
    assert dag.schedule == "0 2 * * *"
    # never started by surprise when Airflow first parses it (the embedded default unpauses
    # DAGs at creation so that the benchmark DAG runs when triggered)
    assert dag.is_paused_upon_creation is True
    assert dag.params["sweep_file"] == "examples/sweep-nightly.json"
    trigger = dag.get_task("trigger")
    assert trigger.upstream_task_ids == {"expand"}
    assert trigger.partial_kwargs["trigger_dag_id"] == "inferbench_benchmark"
    assert trigger.partial_kwargs["max_active_tis_per_dagrun"] == 1
    # the scheduling benchmark's stand-in job lives with the benchmark, not in the product
    assert "inferbench_sched_job" not in dagbag.dags


def test_small_sweep_expands_to_every_model_platform_rate():
    runs = expand_sweep(SMALL, "tiny-2026-11-22")
    assert len(runs) == 2 * 2 * 2  # models x platforms x rates; batch sizes inside a run
    combos = {(r.conf["model"]["depth"], r.conf["platforms"][0], r.conf["workload"]["rate_rps"])
              for r in runs}
    assert combos == {(d, p, rate) for d in (1, 3) for p in ("onnxruntime", "triton")
                      for rate in (5, 20)}
    for r in runs:
        spec = parse_spec(r.conf)  # a valid benchmark spec, as the DAG's Params expect
        assert spec.sweep_id == "tiny-2026-11-22" and r.conf["batch_sizes"] == [1, 4]
        assert r.conf["min_duration_s"] == 5 and r.conf["formats"] == ["onnx"]
        assert r.run_id.startswith("sweep_tiny-2026-11-22_")
    # Shortest predicted first: onnxruntime (3 s start-up) before triton (8 s); at 5 rps
    # min_requests 50 takes 10 s > min_duration 5 s, so the slower rate is longer; depth 1
    # converts faster than depth 3. Exact: 2 points x (1 + max(5, 50/rate)) + start-up +
    # (3 + 6 + 0.5*depth) + 1.5 x 7 tasks.
    expected = sorted(
        (2 * (1 + max(5, 50 / rate)) + {"onnxruntime": 3, "triton": 8}[p] + 9 + 0.5 * d + 10.5,
         d, p, rate) for d in (1, 3) for p in ("onnxruntime", "triton") for rate in (5, 20))
    got = [(r.predicted_s, r.conf["model"]["depth"], r.conf["platforms"][0],
            r.conf["workload"]["rate_rps"]) for r in runs]
    assert got == expected
    assert got[0] == (35.0, 1, "onnxruntime", 20)  # 2 x 6 + 3 + 9.5 + 10.5


def test_small_sweep_planned_placement_fills_idle_workers_then_least_work():
    runs = expand_sweep(SMALL, "tiny")
    plan = planned_placement(runs, worker_names(3))
    order = [plan[r.run_id] for r in runs]
    assert order[:3] == ["cpu-worker-0", "cpu-worker-1", "cpu-worker-2"]  # idle first
    per_worker = {w: sum(r.predicted_s for r in runs if plan[r.run_id] == w)
                  for w in worker_names(3)}
    # greedy least-work keeps the workers within one job of each other
    assert max(per_worker.values()) - min(per_worker.values()) <= max(r.predicted_s
                                                                      for r in runs)


def test_example_sweep_file_is_valid():
    runs = expand_sweep(load_sweep(ROOT / "examples" / "sweep-nightly.json"), "n")
    assert len(runs) == 2 * 2 * 2


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("grid"), "`grid` is required"),
    (lambda d: d["grid"].update(batchsize=[1]), "unknown key 'batchsize' in grid"),
    (lambda d: d.update(extra=1), "unknown key 'extra'"),
    (lambda d: d["grid"].update(rates_rps=[]), r"grid.rates_rps \[\] must be a non-empty"),
    (lambda d: d["grid"].update(platforms=["tfserving"]), "tfserving"),
])
def test_bad_sweep_is_refused_naming_the_field(mutate, match):
    data = copy.deepcopy(SMALL)
    mutate(data)
    with pytest.raises(InferBenchError, match=match):
        expand_sweep(data, "tiny")


def test_missing_sweep_file(tmp_path):
    with pytest.raises(InferBenchError, match="does not exist"):
        load_sweep(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InferBenchError, match="not valid JSON"):
        load_sweep(bad)
    json.loads(json.dumps(SMALL))
