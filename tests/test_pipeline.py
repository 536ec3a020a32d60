"""The stages against a real PostgreSQL and a real server, then one full DAG run.

Uses the project's own ONNX Runtime server (FastAPI); Triton has its own tests. The spec is
tiny so the whole file runs in about a minute.
"""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import func, select

from inferbench import perfdb
from inferbench.backends.process import group_alive
from inferbench.errors import InferBenchError
from inferbench.load.priority import DEFAULT_ISSUER_NICE, DEFAULT_ISSUER_REALTIME
from inferbench.perfdb import schema
from inferbench.spec import parse_spec
from inferbench.stages import STAGES
from inferbench.stages.common import make_context

pytestmark = pytest.mark.integration

SPEC = {
    "name": "pipeline-test",
    "model": {"family": "cnn", "depth": 1, "width": 8, "input_shape": [3, 16, 16]},
    "formats": ["onnx", "torchscript"],
    "platforms": ["onnxruntime"],
    "batch_sizes": [1, 4],
    "workload": {"arrival": "poisson", "rate_rps": 40, "seed": 3},
    "warmup_s": 0.5, "min_duration_s": 2, "min_requests": 40, "max_duration_s": 10,
    "slo": {"percentile": 99, "latency_ms": 500},
    # Tests check the pipeline, not this shared VM: it stalls on its own (see README).
    "max_late_send_pct": 25,
}


def count(conn, table, run_id: str) -> int:
    return conn.execute(select(func.count()).select_from(table)
                        .where(table.c.run_id == run_id)).scalar_one()


def converted(run_id: str, spec: dict):
    """The run's context once its model is generated and converted: what every stage
    after them starts from."""
    ctx = make_context(run_id, spec_json=json.dumps(spec))
    for stage in ("generate", "convert"):
        STAGES[stage](ctx)
    return ctx


def run_stages(run_id: str, spec: dict, platform: str = "onnxruntime") -> dict:
    ctx = converted(run_id, spec)
    try:
        endpoint = STAGES["serve"](ctx, platform)
        assert endpoint["status"] == "ready" and endpoint["cold_start_s"] > 0
        STAGES["load"](ctx, platform)
    finally:
        STAGES["collect"](ctx, platform)
        STAGES["stop"](ctx, platform)
    assert not group_alive(endpoint["pid"]), "the server outlived its teardown"
    return STAGES["analyze"](ctx)


@pytest.mark.triton
def test_triton_over_grpc_through_the_stages(inferbench_env, db_url):
    """workload.transport = grpc: the load stage drives Triton's gRPC port, and the run
    lands in the same tables with the same checks as over HTTP."""
    spec = {**SPEC, "name": "pipeline-grpc", "formats": ["onnx"], "platforms": ["triton"],
            "batch_sizes": [2], "workload": {**SPEC["workload"], "transport": "grpc"}}
    summary = run_stages("pipeline-grpc", spec, "triton")
    assert summary["verdict"] == "VALID", summary["reasons"]
    with perfdb.engine(db_url).connect() as conn:
        (result,) = conn.execute(select(schema.results).where(
            schema.results.c.run_id == "pipeline-grpc")).all()
        assert result.n_failed == 0 and result.n_ok >= 40
        assert 20 < result.throughput_rps < 60
        assert count(conn, schema.requests, "pipeline-grpc") == result.n_ok
        # Triton's loaded model config says where its instances run: KIND_CPU here.
        facts = conn.execute(select(schema.provenance.c.facts).where(
            schema.provenance.c.run_id == "pipeline-grpc",
            schema.provenance.c.platform == "triton")).scalar_one()
        assert facts["device"] == "cpu"


def test_stages_write_a_complete_valid_run(inferbench_env, db_url):
    summary = run_stages("pipeline-direct", SPEC)
    assert summary["verdict"] == "VALID", summary["reasons"]
    with perfdb.engine(db_url).connect() as conn:
        run = conn.execute(select(schema.runs).where(
            schema.runs.c.run_id == "pipeline-direct")).one()._mapping
        assert run["status"] == "complete" and run["spec_hash"] == parse_spec(SPEC).spec_hash()
        conversions = conn.execute(select(schema.conversions).where(
            schema.conversions.c.run_id == "pipeline-direct")).all()
        assert {c.format for c in conversions} == {"onnx", "torchscript"}
        assert all(c.passed and c.max_abs_diff <= 1e-4 for c in conversions)
        results = conn.execute(select(schema.results).where(
            schema.results.c.run_id == "pipeline-direct").order_by(schema.results.c.point)).all()
        assert [r.batch_size for r in results] == [1, 4]
        n_requests = count(conn, schema.requests, "pipeline-direct")
        assert n_requests == sum(r.n_ok + r.n_failed for r in results) >= 80
        for r in results:
            lat = r.latency_ms
            assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
            assert 20 < r.throughput_rps < 60  # offered 40 rps, open loop
        assert count(conn, schema.resource_samples, "pipeline-direct") > 0
        # the priority the load generator really ran at, per point (root here may take it)
        priorities = set(conn.execute(select(schema.points.c.issuer_nice,
                                             schema.points.c.issuer_realtime).where(
            schema.points.c.run_id == "pipeline-direct")).all())
        if os.geteuid() == 0:
            assert priorities == {(DEFAULT_ISSUER_NICE, DEFAULT_ISSUER_REALTIME)}
        else:
            assert {realtime for _, realtime in priorities} == {None}
        # resent requests are counted on every point
        resent = conn.execute(select(schema.points.c.resent_requests).where(
            schema.points.c.run_id == "pipeline-direct")).scalars().all()
        assert resent and all(n is not None and n >= 0 for n in resent)
        facts = conn.execute(select(schema.provenance.c.facts).where(
            schema.provenance.c.run_id == "pipeline-direct")).scalar_one()
        assert facts["spec_hash"] == run["spec_hash"] and facts["packages"]["onnxruntime"]
        assert facts["device"] == "cpu"  # as the serve stage asked the server
    report = run["report_path"]
    html = open(report).read()
    assert "VALID" in html and "data:image/png;base64," in html
    # collect retried (Airflow retries it) stores the same rows once
    STAGES["collect"](make_context("pipeline-direct"), "onnxruntime")
    with perfdb.engine(db_url).connect() as conn:
        assert count(conn, schema.requests, "pipeline-direct") == n_requests



def test_failed_load_keeps_partial_data_marked(inferbench_env, db_url, monkeypatch):
    """The server dies after the first point: that point is kept, the run is partial."""
    from inferbench.stages import load as load_stage

    original = load_stage.run_point
    calls = {"n": 0}

    def run_point_then_kill_server(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("server went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(load_stage, "run_point", run_point_then_kill_server)
    with pytest.raises(ConnectionError):
        run_stages("pipeline-partial", SPEC)
    ctx = make_context("pipeline-partial")
    summary = STAGES["analyze"](ctx)
    assert summary["status"] == "partial" and summary["verdict"] == "INVALID"
    assert any("server went away" in r for r in summary["reasons"])
    with perfdb.engine(db_url).connect() as conn:
        dep = conn.execute(select(schema.deployments).where(
            schema.deployments.c.run_id == "pipeline-partial")).one()
        assert dep.status == "partial"
        assert count(conn, schema.results, "pipeline-partial") == 1  # the measured point


def test_full_dag_run_with_dag_test(inferbench_env, db_url):
    """generate -> convert -> serve -> load -> collect -> stop -> analyze through Airflow's
    dag.test (in-process executor, real task code); Triton's group is skipped."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db as airflow_db
    from conftest import ROOT

    airflow_db.initdb()
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["inferbench_benchmark"]
    spec = {**SPEC, "batch_sizes": [2], "name": "dag-test"}
    dagrun = dag.test(run_conf=spec)
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    assert dagrun.state == "success", states
    assert states["onnxruntime.measure"] == "success" and states["triton.configs"] == "skipped"
    with perfdb.engine(db_url).connect() as conn:
        run = conn.execute(select(schema.runs).where(
            schema.runs.c.run_id == dagrun.run_id)).one()
        assert run.verdict == "VALID" and run.status == "complete", run.verdict_reasons
        assert count(conn, schema.results, dagrun.run_id) == 1


def test_dag_sweeps_two_server_configs_one_server_at_a_time(inferbench_env, db_url):
    """A server grid of two configurations (dynamic batching off / on with 2 ms of queue
    delay) on one platform through dag.test: `measure` is mapped over both, both points are
    stored under their labels, and the two servers' lifetimes do not overlap."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db as airflow_db
    from conftest import ROOT

    from inferbench.paths import RunDir
    from inferbench.stages.common import read_json

    airflow_db.initdb()
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["inferbench_benchmark"]
    spec = {**SPEC, "batch_sizes": [1], "name": "dag-sweep",
            "workload": {"arrival": "closed_loop", "concurrency": 4, "seed": 3},
            "server": {"dynamic_batching": [False, True], "max_queue_delay_us": 2000}}
    dagrun = dag.test(run_conf=spec)
    tis = dagrun.get_task_instances()
    states = {(ti.task_id, ti.map_index): ti.state for ti in tis}
    assert dagrun.state == "success", states
    assert states[("onnxruntime.measure", 0)] == states[("onnxruntime.measure", 1)] == "success"
    assert ("onnxruntime.measure", 2) not in states
    assert states[("triton.configs", -1)] == "skipped"
    with perfdb.engine(db_url).connect() as conn:
        run = conn.execute(select(schema.runs).where(
            schema.runs.c.run_id == dagrun.run_id)).one()
        assert run.status == "complete", run.verdict_reasons
        rows = conn.execute(
            select(schema.results.c.config_index, schema.server_configs.c.label,
                   schema.server_configs.c.knobs, schema.results.c.n_ok)
            .join(schema.server_configs, (schema.server_configs.c.run_id
                                          == schema.results.c.run_id)
                  & (schema.server_configs.c.platform == schema.results.c.platform)
                  & (schema.server_configs.c.config_index
                     == schema.results.c.config_index))
            .where(schema.results.c.run_id == dagrun.run_id)
            .order_by(schema.results.c.config_index)).all()
    assert [(r.config_index, r.label) for r in rows] == [
        (0, "db=off,inst=1"), (1, "db=on,delay=2000us,inst=1")]
    assert rows[1].knobs == {"dynamic_batching": True, "max_queue_delay_us": 2000,
                             "preferred_batch_sizes": [], "instance_count": 1,
                             "openvino_precision": "f32"}
    assert all(r.n_ok >= SPEC["min_requests"] for r in rows)
    # One server at a time: whichever configuration ran first, its server was stopped
    # before the other's was started (the endpoint files keep both times), and the two
    # mapped task instances did not overlap either. (dag.test picks their order freely.)
    run_dir = RunDir(dagrun.run_id)
    servers = [read_json(run_dir.endpoint_file("onnxruntime", c)) for c in (0, 1)]
    assert [e["config_label"] for e in servers] == [r.label for r in rows]
    earlier, later = sorted(servers, key=lambda e: e["started_at"])
    assert earlier["stopped_at"] <= later["started_at"], servers
    earlier, later = sorted((ti for ti in tis if ti.task_id == "onnxruntime.measure"),
                            key=lambda ti: ti.start_date)
    assert earlier.end_date <= later.start_date


def test_a_failed_configuration_keeps_the_others_measurements(inferbench_env, db_url,
                                                              monkeypatch):
    """Two server configurations through the stages the DAG runs (measure per config, then
    collect, stop, analyze); the second one's load dies: the first configuration's point is
    kept and labelled, the second is marked failed, its server is stopped all the same."""
    from inferbench.paths import RunDir
    from inferbench.stages import load as load_stage
    from inferbench.stages.common import read_json

    spec = {**SPEC, "batch_sizes": [1], "name": "sweep-partial",
            "workload": {"arrival": "closed_loop", "concurrency": 2, "seed": 3},
            "server": {"instance_count": [1, 2]}}
    original = load_stage.run_point
    calls = {"n": 0}

    def second_config_fails(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("server went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(load_stage, "run_point", second_config_fails)
    ctx = converted("sweep-partial", spec)
    configs = STAGES["configs"](ctx, "onnxruntime")
    assert configs == [{"config": 0, "config_label": "db=off,inst=1"},
                       {"config": 1, "config_label": "db=off,inst=2"}]
    STAGES["measure"](ctx, "onnxruntime", 0)
    with pytest.raises(ConnectionError):
        STAGES["measure"](ctx, "onnxruntime", 1)
    collected = STAGES["collect"](ctx, "onnxruntime")
    assert [(c["label"], c["status"]) for c in collected["configs"]] == [
        ("db=off,inst=1", "measured"), ("db=off,inst=2", "failed")]
    STAGES["stop"](ctx, "onnxruntime")
    endpoint = read_json(RunDir("sweep-partial").endpoint_file("onnxruntime", 1))
    assert not group_alive(endpoint["pid"])
    summary = STAGES["analyze"](ctx)
    assert summary["status"] == "partial" and summary["verdict"] == "INVALID"
    assert any(r.startswith("platform onnxruntime [db=off,inst=2] failed: ConnectionError")
               for r in summary["reasons"]), summary["reasons"]
    with perfdb.engine(db_url).connect() as conn:
        results = conn.execute(select(schema.results.c.config_index).where(
            schema.results.c.run_id == "sweep-partial")).scalars().all()
        deployments = conn.execute(
            select(schema.deployments.c.config_index, schema.deployments.c.status)
            .where(schema.deployments.c.run_id == "sweep-partial")
            .order_by(schema.deployments.c.config_index)).all()
    assert results == [0]
    assert [tuple(d) for d in deployments] == [(0, "measured"), (1, "failed")]


def test_measure_stops_a_server_an_earlier_killed_configuration_left(inferbench_env,
                                                                    monkeypatch):
    """A measure task killed hard leaves its server running; the next configuration's
    measure stops it before starting its own, so two servers never overlap. Serve, load
    and stop work on the configuration measure resolved: the grid is expanded once."""
    from inferbench import server_grid

    spec = {**SPEC, "batch_sizes": [1], "name": "sweep-leftover", "min_requests": 10,
            "min_duration_s": 0.5, "warmup_s": 0,
            "workload": {"arrival": "closed_loop", "concurrency": 1, "seed": 3},
            "server": {"instance_count": [1, 2]}}
    ctx = converted("sweep-leftover", spec)
    leftover = STAGES["serve"](ctx, "onnxruntime", 0)  # as if its measure task was killed
    assert group_alive(leftover["pid"])
    expansions = []
    expand = server_grid.server_configs
    monkeypatch.setattr(server_grid, "server_configs",
                        lambda spec: expansions.append(spec) or expand(spec))
    try:
        result = STAGES["measure"](ctx, "onnxruntime", 1)
        assert len(expansions) == 1
        assert not group_alive(leftover["pid"]), "config 0's server outlived config 1's start"
        assert result["label"] == "db=off,inst=2" and result["stopped"]
    finally:
        STAGES["stop"](ctx, "onnxruntime")


def test_a_retried_configuration_stops_its_own_earlier_server_first(inferbench_env):
    """An attempt at a configuration killed hard leaves its server running; the retry of
    that same configuration stops it before starting its own: one server, never two."""
    spec = {**SPEC, "batch_sizes": [1], "name": "retry-same", "min_requests": 10,
            "min_duration_s": 0.5, "warmup_s": 0,
            "workload": {"arrival": "closed_loop", "concurrency": 1, "seed": 3}}
    ctx = converted("retry-same", spec)
    killed_attempt = STAGES["serve"](ctx, "onnxruntime", 0)
    assert group_alive(killed_attempt["pid"])
    try:
        result = STAGES["measure"](ctx, "onnxruntime", 0)
        assert not group_alive(killed_attempt["pid"]), \
            "the first attempt's server outlived the retry"
        assert result["stopped"] and result["points"]
    finally:
        STAGES["stop"](ctx, "onnxruntime")


def test_a_truncated_records_file_costs_its_own_point_only(inferbench_env, db_url):
    """A point's request records cut short (a full disk, a killed writer of before the
    atomic write): collect keeps the configuration's other point, marks the deployment
    partial naming the file, and does not fail the task."""
    from inferbench.paths import RunDir

    spec = {**SPEC, "batch_sizes": [1, 2], "name": "truncated-npz", "min_requests": 10,
            "min_duration_s": 0.5, "warmup_s": 0,
            "workload": {"arrival": "closed_loop", "concurrency": 1, "seed": 3}}
    ctx = converted("truncated-npz", spec)
    STAGES["measure"](ctx, "onnxruntime", 0)
    records = RunDir("truncated-npz").config_files("onnxruntime", 0).point_records(0)
    records.write_bytes(records.read_bytes()[:100])
    collected = STAGES["collect"](ctx, "onnxruntime")
    assert collected["status"] == "partial" and collected["points"] == 1
    with perfdb.engine(db_url).connect() as conn:
        status, error = conn.execute(
            select(schema.deployments.c.status, schema.deployments.c.error)
            .where(schema.deployments.c.run_id == "truncated-npz")).one()
        assert count(conn, schema.points, "truncated-npz") == 1
    assert status == "partial" and f"{records} are unreadable" in error


def test_a_sigtermed_measure_stage_stops_its_server_and_keeps_its_record(inferbench_env,
                                                                          tmp_path):
    """What on_kill and `docker stop` do: SIGTERM the stage process in the middle of a
    point. Its finally blocks run: the server it started is stopped, load.json says why the
    configuration ended, and the process exits 143."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from inferbench.paths import RunDir
    from inferbench.stages.common import read_json

    spec = {**SPEC, "batch_sizes": [1], "name": "sigterm", "warmup_s": 0,
            "min_duration_s": 120, "max_duration_s": 180,
            "workload": {"arrival": "closed_loop", "concurrency": 1, "seed": 3}}
    converted("sigterm", spec)
    files = RunDir("sigterm").config_files("onnxruntime", 0)
    log = tmp_path / "stage.log"
    with log.open("w") as out:  # a file, not a pipe nobody reads while the stage runs
        stage = subprocess.Popen(
            [sys.executable, "-m", "inferbench", "stage", "measure", "--run", "sigterm",
             "--platform", "onnxruntime", "--config", "0"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        endpoint = None
        while time.monotonic() < deadline:
            endpoint = read_json(files.endpoint) if files.endpoint.exists() else None
            if endpoint and endpoint.get("status") == "ready":
                break
            time.sleep(0.2)
        assert endpoint and endpoint.get("status") == "ready", log.read_text()[-2000:]
        time.sleep(3)  # into the point's measurement
        os.kill(stage.pid, signal.SIGTERM)
        stage.wait(timeout=60)
    finally:
        if stage.poll() is None:
            os.killpg(stage.pid, signal.SIGKILL)
            stage.wait()
    assert stage.returncode == 143, log.read_text()[-2000:]
    assert not group_alive(endpoint["pid"]), "the server outlived its SIGTERMed stage"
    assert "stopped_at" in read_json(files.endpoint)
    assert "terminated (SIGTERM)" in read_json(files.load)["error"]


def test_a_stage_killed_between_spawning_its_server_and_recording_its_pid_leaves_none(
        inferbench_env):
    """The serve stage SIGKILLed right after the spawn, before the pid is written: the
    endpoint recorded beforehand names the server's tag, and stop finds the server by it."""
    import subprocess
    import sys

    from inferbench.backends.process import tagged_leaders
    from inferbench.paths import RunDir
    from inferbench.stages.common import read_json

    spec = {**SPEC, "batch_sizes": [1], "name": "spawn-window"}
    ctx = converted("spawn-window", spec)
    killed_after_spawn = (
        "import os, signal\n"
        "from inferbench.stages import STAGES, serve\n"
        "from inferbench.stages.common import make_context\n"
        "serve.process_started_at = lambda pid: os.kill(os.getpid(), signal.SIGKILL)\n"
        "STAGES['serve'](make_context('spawn-window'), 'onnxruntime', 0)\n")
    died = subprocess.run([sys.executable, "-c", killed_after_spawn], timeout=120)
    assert died.returncode == -9
    endpoint = read_json(RunDir("spawn-window").endpoint_file("onnxruntime", 0))
    assert endpoint["status"] == "starting" and "pid" not in endpoint
    orphans = tagged_leaders(endpoint["server_tag"])
    assert len(orphans) == 1, "the spawned server should be running, unrecorded"
    try:
        assert STAGES["stop"](ctx, "onnxruntime")["stopped"]
        assert tagged_leaders(endpoint["server_tag"]) == []
        assert not group_alive(orphans[0])
    finally:
        for pid in tagged_leaders(endpoint["server_tag"]):
            os.killpg(pid, 9)


def test_torchscript_for_a_gpu_is_traced_there_so_a_host_without_one_refuses_at_convert(
        inferbench_env):
    """A trace keeps the device of tensors the model makes itself, so TorchScript is traced
    on the spec's GPU; on this host, whose torch sees none, convert refuses with the fix
    before any server starts (the GPU side was checked on an H200: README)."""
    spec = {**SPEC, "name": "ts-gpu", "hardware": "gpu", "platforms": ["torchscript"]}
    with pytest.raises(InferBenchError, match="sees 0 CUDA device.*fix: install a CUDA build"):
        converted("ts-gpu", spec)

