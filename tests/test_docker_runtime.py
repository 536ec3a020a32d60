"""The docker runtime for real: images built from the local base, stages and servers as
containers started through Airflow, nothing left behind, even after a task process is
killed outright. Needs a Docker daemon; `.ci/run` starts one (scripts/start-docker.sh)
where the machine allows, otherwise these skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, TaskLog
from sqlalchemy import func, inspect, select

from inferbench import containers
from inferbench.netutil import free_port
from inferbench.pipeline import DB_ENV, SPEC_ENV

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def _stage_operator(**kwargs):
    from operators.stage import StageOperator

    return StageOperator(task_id=f"t_{time.monotonic_ns()}", runtime="docker", **kwargs)


def _sleeping_runner(image: str):
    """A docker runner whose stage container only sleeps."""
    from operators.runners import DockerRunner

    class Sleeping(DockerRunner):
        def command(self, call):
            return ["300"]

    return Sleeping(image=image, entrypoint=["sleep"])


def _context(run_id: str, spec: dict) -> dict:
    from airflow.sdk.definitions.param import ParamsDict

    return {"run_id": run_id, "params": ParamsDict(spec), "ti": None}


def test_a_failing_stage_container_fails_the_task_with_its_logs_and_is_removed(
        docker_client, stage_image, tmp_path, monkeypatch):
    from inferbench.spec import example_spec
    from operators.runners import StageContainerFailed

    monkeypatch.setenv("INFERBENCH_HOME", str(tmp_path))
    monkeypatch.setenv(DB_ENV, "postgresql+psycopg://nobody@127.0.0.1:1/none")
    run_id = f"docker-fail-{os.getpid()}"
    spec = example_spec().model_dump(mode="json")
    op = _stage_operator(stage="load", platform="onnxruntime", image=stage_image)
    # No serve stage ran for this run, so load has no endpoint and exits non-zero.
    with pytest.raises(StageContainerFailed) as failed:
        op.execute(_context(run_id, spec))
    assert failed.value.returncode != 0
    assert any("no ready server" in line for line in failed.value.tail)
    assert containers.run_containers(docker_client, run_id) == []


def test_on_kill_removes_a_running_stage_container(docker_client, stage_image, tmp_path,
                                                   monkeypatch):
    from inferbench.spec import example_spec

    monkeypatch.setenv("INFERBENCH_HOME", str(tmp_path))
    run_id = f"docker-kill-{os.getpid()}"
    op = _stage_operator(stage="generate", image=stage_image)
    op.make_runner = lambda _runtime: _sleeping_runner(stage_image)
    outcome: list[BaseException | None] = []

    def execute() -> None:
        try:
            op.execute(_context(run_id, example_spec().model_dump(mode="json")))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the killed task's failure is expected
            outcome.append(exc)

    thread = threading.Thread(target=execute)
    thread.start()
    deadline = time.monotonic() + 60
    while not containers.run_containers(docker_client, run_id):
        assert time.monotonic() < deadline, "the stage container never started"
        time.sleep(0.2)
    op.on_kill()
    thread.join(60)
    assert not thread.is_alive() and outcome and outcome[0] is not None
    assert containers.run_containers(docker_client, run_id) == []


def _python_runner(image: str, script: str, *args: str):
    """A docker runner whose stage container runs `python -c script args...`."""
    from operators.runners import DockerRunner

    class Python(DockerRunner):
        def command(self, call):
            return ["-c", script, *args]

    return Python(image=image, entrypoint=["python"])


# In the stage container of a measure-like stage: start a serving container through the
# Docker socket the stage got (the proxy), try a call the proxy refuses, then hang.
_STARTS_A_SERVER = """
import os, sys, time
from pathlib import Path
from inferbench import containers
client = containers.client()
spec = containers.ContainerSpec(
    image=os.environ["INFERBENCH_IMAGE"], command=["300"], entrypoint=["sleep"],
    run_id=sys.argv[1], role=containers.server_role("onnxruntime", 0),
    home=Path(os.environ["INFERBENCH_HOME"]))
print("server started", client.containers.run(**spec.create_kwargs()).id, flush=True)
try:
    client.containers.list(all=True)
except Exception as exc:
    print("an unfiltered list:", exc, flush=True)
time.sleep(300)
"""

# The task process: runs the measure stage's container like the operator does, and on
# SIGTERM stops it as Airflow's on_kill does (a 30 s grace, which the hanging stage uses up).
_TASK_PROCESS = """
import signal, sys
from inferbench.pipeline import Stage
from operators.runners import DockerRunner, StageCall

image, run_id, script = sys.argv[1:4]

class MeasureLike(DockerRunner):
    def command(self, call):
        return ["-c", script, run_id]

class TaskLog:
    def info(self, fmt, *args):
        print(fmt % args, flush=True)
    warning = info

runner = MeasureLike(image=image, entrypoint=["python"])
signal.signal(signal.SIGTERM, lambda *_: runner.kill())
runner.run(StageCall(Stage.MEASURE, run_id, {}, "onnxruntime", 0), TaskLog())
"""


def _output_until(process: subprocess.Popen, marker: str, timeout_s: float) -> list[str]:
    """The lines `process` printed, up to the first holding `marker`."""
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not any(marker in line for line in lines):
        assert process.poll() is None, "\n".join(lines)
        assert time.monotonic() < deadline, "\n".join(lines)
        time.sleep(0.2)
    return lines


def test_a_sigkilled_task_leaves_its_containers_and_the_next_attempt_removes_them(
        docker_client, stage_image, tmp_path, monkeypatch):
    """The task process is SIGTERMed and then SIGKILLed while its stage container (which
    started a server through its Docker proxy) runs: both containers outlive it, and the
    next attempt at the stage removes them before its own container starts."""
    from inferbench.pipeline import Stage
    from operators.runners import StageCall

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("INFERBENCH_HOME", str(home))
    monkeypatch.setenv(containers.GPUS_ENV, "none")
    run_id = f"docker-sigkill-{os.getpid()}"
    run_label = f"{containers.LABEL_RUN}={run_id}"
    server_role = containers.server_role("onnxruntime", 0)
    other_run = docker_client.containers.run(
        stage_image, ["120"], entrypoint=["sleep"], detach=True, network_mode="none",
        labels={containers.LABEL_RUN: f"{run_id}-other", containers.LABEL_ROLE: server_role})
    task = subprocess.Popen(
        [sys.executable, "-c", _TASK_PROCESS, stage_image, run_id, _STARTS_A_SERVER],
        cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # the stage container's socket is the proxy, not the daemon's
        output = _output_until(task, "an unfiltered list: 403", timeout_s=60)
        assert "listing containers is allowed only with the filter" in output[-1]
        task.send_signal(signal.SIGTERM)
        time.sleep(2)
        task.kill()
        task.wait(10)
        left = {c.labels[containers.LABEL_ROLE]: c.status
                for c in containers.run_containers(docker_client, run_id)}
        assert left == {"measure": "running", server_role: "running"}

        retry = TaskLog()
        proxies = home / containers.PROXY_DIR_NAME
        _python_runner(stage_image, "import os, sys; print('sockets seen:', os.listdir("
                       "sys.argv[1]))", str(proxies)).run(
            StageCall(Stage.MEASURE, run_id, {}, "onnxruntime", 0), retry)
        # it ran, and its own proxy's socket (there on the worker) is hidden in containers
        assert "sockets seen: []" in retry.lines
        removed = [line for line in retry.lines if line.startswith("removing container")]
        assert len(removed) == 2, retry.lines
        assert any("server started" in line for line in removed)  # its last lines, kept
        ps = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label={run_label}"],
                            capture_output=True, text=True, check=True)
        assert ps.stdout.strip() == ""
        other_run.reload()
        assert other_run.status == "running"  # another run's server is not this run's
        # the killed task's proxy socket went with the next proxy's start
        assert list((home / containers.PROXY_DIR_NAME).glob("*.sock")) == []
    finally:
        if task.poll() is None:
            task.kill()
        for container in containers.run_containers(docker_client, run_id) + [other_run]:
            containers.remove(container)


def test_the_stop_stage_removes_a_server_that_a_killed_serve_never_recorded(
        docker_client, stage_image, tmp_path, monkeypatch):
    from inferbench.pipeline import Stage
    from operators.runners import StageCall

    monkeypatch.setenv("INFERBENCH_HOME", str(tmp_path))
    monkeypatch.setenv(containers.GPUS_ENV, "none")
    run_id = f"docker-unrecorded-{os.getpid()}"
    # no endpoint file names it: the serve task died before writing the container's id
    docker_client.containers.run(
        stage_image, ["120"], entrypoint=["sleep"], detach=True, network_mode="none",
        labels={containers.LABEL_RUN: run_id,
                containers.LABEL_ROLE: containers.server_role("onnxruntime", 1)})
    log = TaskLog()
    try:
        _python_runner(stage_image, "print('no server recorded')").run(
            StageCall(Stage.STOP, run_id, {}, "onnxruntime"), log)
        assert "no server recorded" in log.lines
        assert any("a server the stop stage did not find" in line for line in log.lines)
        assert containers.run_containers(docker_client, run_id) == []
    finally:
        for container in containers.run_containers(docker_client, run_id):
            containers.remove(container)


def _table_rows(url: str, run_id: str) -> dict[str, int]:
    from inferbench import perfdb
    from inferbench.perfdb import schema

    engine = perfdb.engine(url)
    counts = {}
    with engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            if "run_id" in table.c:
                counts[table.name] = conn.execute(select(func.count()).select_from(table).where(
                    table.c.run_id == run_id)).scalar_one()
    return counts


def test_a_benchmark_with_runtime_docker_through_airflow_matches_the_local_schema(
        docker_client, stage_image, tmp_path):
    """One full benchmark through the real scheduler with every stage and the server in
    containers; its rows fill the same tables as a local run's, and no container remains."""
    home = tmp_path / "home"
    env = {**os.environ, "INFERBENCH_HOME": str(home), "INFERBENCH_IMAGE": stage_image}
    for key in (DB_ENV, SPEC_ENV, "AIRFLOW_HOME") + tuple(
            k for k in os.environ if k.startswith("AIRFLOW__")):
        env.pop(key, None)
    spec = str(ROOT / "examples" / "quick-onnxruntime.json")
    port = str(free_port())

    def inferbench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "inferbench", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=1200)

    try:
        docker_run = inferbench("run", spec, "--json", "--port", port, "--runtime", "docker")
        assert docker_run.returncode == 0, docker_run.stdout + docker_run.stderr[-5000:]
        result = json.loads(docker_run.stdout)
        assert result["verdict"] == "VALID" and result["status"] == "complete"
        from inferbench.paths import RunDir

        endpoint = json.loads(RunDir(result["run_id"], home / "runs").endpoint_file(
            "onnxruntime").read_text())
        assert endpoint["runtime"] == "docker" and endpoint["container_id"]
        # the teardown ran and kept the server's log (quiet when nothing went wrong)
        assert endpoint["stopped_at"] and Path(endpoint["log"]).exists()

        mismatch = inferbench("run", spec, "--json", "--port", port, "--runtime", "local")
        assert mismatch.returncode == 1 and "inferbench down" in mismatch.stderr
    finally:
        down = inferbench("down")
        assert down.returncode == 0, down.stderr
    assert containers.run_containers(docker_client, result["run_id"]) == []

    # The same spec with the local runtime, into the same database: the same tables get rows.
    try:
        local_run = inferbench("run", spec, "--json", "--port", port)
        assert local_run.returncode == 0, local_run.stdout + local_run.stderr[-5000:]
        local = json.loads(local_run.stdout)
        from inferbench.embedded.postgres import database_url

        url = database_url(home, "inferbench")
        docker_rows, local_rows = _table_rows(url, result["run_id"]), _table_rows(url,
                                                                                  local["run_id"])
        assert {t for t, n in docker_rows.items() if n} == {t for t, n in local_rows.items() if n}
        assert docker_rows["requests"] >= 100
        from inferbench import perfdb

        assert set(inspect(perfdb.engine(url)).get_table_names()) >= set(docker_rows)
    finally:
        inferbench("down")
