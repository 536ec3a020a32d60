"""The stage operator and its runners: one argument check shared with the CLI, a local
runner that streams, returns the result and kills its process group, and a docker runner
whose container settings come from ContainerSpec (the docker-daemon tests are in
test_docker_runtime.py)."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time

import pytest
from conftest import TaskLog

from inferbench.cli import main
from inferbench.containers import RUNTIMES
from inferbench.pipeline import (
    CONFIG_STAGES,
    PLATFORM_STAGES,
    SERVER_STAGES,
    SPEC_ENV,
    STAGE_TRAITS,
    Stage,
    StageArgumentError,
    parse_result_line,
    result_line,
    stage_args,
    validate_stage_args,
)


def _script_runner(code: str):
    """A local runner whose child runs `code` instead of `inferbench stage`."""
    from operators.runners import LocalRunner

    class Script(LocalRunner):
        def argv(self, call):
            return [sys.executable, "-c", code]

    return Script()


def _call(stage: Stage = Stage.GENERATE, **kwargs):
    from operators.runners import StageCall

    return StageCall(stage=stage, run_id="r1", spec={"platforms": ["onnxruntime"]}, **kwargs)


# --- the one check, shared by the CLI and the operator ---------------------------------

def test_stage_lists_derive_from_the_traits():
    assert set(STAGE_TRAITS) == set(Stage)
    assert set(CONFIG_STAGES) <= set(PLATFORM_STAGES)
    assert set(SERVER_STAGES) == {Stage.SERVE, Stage.STOP, Stage.MEASURE}
    from inferbench.stages import STAGES

    assert set(STAGES) == set(Stage) and STAGES["stop"].__name__ == "serve.stop"


@pytest.mark.parametrize(("args", "message"), [
    (("deploy",), "unknown stage 'deploy'; expected one of 'generate', "),
    (("load",), "stage 'load' needs a platform"),
    (("generate", "onnxruntime"), "stage 'generate' takes no platform"),
    (("load", "tensorflow-lite"), "unknown platform 'tensorflow-lite'"),
    (("analyze", None, 0), "stage 'analyze' takes no server configuration"),
    (("measure", "onnxruntime", -1), "invalid server configuration index -1"),
])
def test_bad_stage_arguments_are_rejected_by_name(args, message):
    with pytest.raises(StageArgumentError, match="fix: ") as bad:
        validate_stage_args(*args)
    assert message in str(bad.value)
    assert isinstance(bad.value, ValueError)  # what an operator constructor raises


def test_the_cli_and_the_operator_reject_the_same_arguments(capsys):
    from operators.stage import StageOperator

    assert main(["stage", "generate", "--run", "x", "--platform", "onnxruntime"]) == 1
    cli_error = capsys.readouterr().err
    with pytest.raises(ValueError) as operator_error:
        StageOperator(task_id="t", stage="generate", platform="onnxruntime")
    assert str(operator_error.value) in cli_error


def test_stage_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit):
        main(["stage", "--help"])
    out = capsys.readouterr().out
    for stage, traits in STAGE_TRAITS.items():
        assert f"{stage.value:<9} {traits.summary}" in out


def test_the_result_line_round_trips():
    line = result_line({"config": 1, "label": "db=off"})
    assert parse_result_line(line + "\n") == (True, {"config": 1, "label": "db=off"})
    assert parse_result_line("RESULTS are in") == (False, None)
    assert stage_args(Stage.MEASURE, "r", "onnxruntime", 0) == [
        "stage", "measure", "--run", "r", "--platform", "onnxruntime", "--config", "0"]


# --- the operator ------------------------------------------------------------------------

def test_operator_checks_its_runtime():
    from operators.stage import StageOperator

    with pytest.raises(ValueError, match="Invalid `runtime` value 'k8s', expected one of "
                       "'local', 'docker'"):
        StageOperator(task_id="t", stage="generate", runtime="k8s")


def test_every_runtime_has_a_runner():
    from operators.runners import RUNNERS, runner_for

    assert set(RUNNERS) == set(RUNTIMES)
    for runtime in RUNTIMES:
        assert isinstance(runner_for(runtime), RUNNERS[runtime])


def test_operator_skips_a_platform_the_spec_does_not_list():
    from airflow.sdk.exceptions import AirflowSkipException

    from operators.stage import StageOperator

    op = StageOperator(task_id="t", stage="configs", platform="triton", runtime="local")
    with pytest.raises(AirflowSkipException, match="'triton' is not in this run's spec"):
        op.execute({"run_id": "r", "params": {"platforms": ["onnxruntime"]}})


def test_operator_hands_the_call_to_its_runtime_runner():
    from operators.stage import StageOperator

    seen = []

    class Recording:
        def run(self, call, log):
            seen.append(call)
            return {"ok": True}

        def kill(self):
            pass

    op = StageOperator(task_id="t", stage="measure", platform="onnxruntime", config=1,
                       config_label="db=on", runtime="local")
    op.make_runner = lambda runtime: (seen.append(runtime), Recording())[1]
    spec = {"platforms": ["onnxruntime"], "name": "x"}
    assert op.execute({"run_id": "r7", "params": spec}) == {"ok": True}
    runtime, call = seen
    assert runtime == "local"
    assert call.args() == ["stage", "measure", "--run", "r7", "--platform", "onnxruntime",
                           "--config", "1"]
    assert call.spec == spec


# --- the local runner ----------------------------------------------------------------------

def test_local_runner_streams_output_and_returns_the_last_result():
    code = ("import os; print('hello'); print('RESULT {\"n\": 1}'); "
            f"print('spec', os.environ[{SPEC_ENV!r}]); print('RESULT {{\"n\": 2}}')")
    log = TaskLog()
    assert _script_runner(code).run(_call(), log) == {"n": 2}
    assert "hello" in log.lines
    assert 'spec {"platforms": ["onnxruntime"]}' in log.lines
    assert not any(line.startswith("RESULT") for line in log.lines)


def test_local_runner_failure_carries_the_output_tail():
    from operators.runners import StageFailed

    code = "import sys; [print(i) for i in range(100)]; sys.exit(3)"
    with pytest.raises(StageFailed, match="stage 'generate' exited with code 3") as failed:
        _script_runner(code).run(_call(), TaskLog())
    assert failed.value.returncode == 3
    assert failed.value.tail == [str(i) for i in range(70, 100)]


def test_local_runner_kill_stops_the_whole_process_group(tmp_path):
    from operators.runners import StageFailed

    # The stage's own child (think: the server it started) must go too.
    pid_file = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('started', flush=True); "
            "time.sleep(300)")
    runner = _script_runner(code)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            runner.run(_call(), TaskLog())
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the killed stage's failure is expected
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the stage never started its child"
        time.sleep(0.05)
    runner.kill()
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(outcome[0], StageFailed) and outcome[0].returncode < 0
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the stage's child outlived the kill"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


# --- the docker runner's container (no daemon needed) --------------------------------------

@pytest.mark.parametrize("stage", list(Stage))
def test_docker_runner_builds_the_stage_container_from_container_spec(stage, tmp_path,
                                                                       monkeypatch):
    from inferbench.containers import DOCKER_SOCKET, LABEL_ROLE, LABEL_RUN
    from operators.runners import DockerRunner

    monkeypatch.setenv("INFERBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("INFERBENCH_GPUS", "all")
    traits = STAGE_TRAITS[stage]
    call = _call(stage, platform="onnxruntime" if traits.takes_platform else None,
                 config=0 if traits.takes_config else None)
    call = dataclasses.replace(call, spec={**call.spec, "resources": {"cpus": 2,
                                                                      "memory_gb": 1}})
    runner = DockerRunner(image="inferbench/stage:test")
    kwargs = runner.create_kwargs(runner.container_spec(call))
    assert kwargs["image"] == "inferbench/stage:test"
    assert kwargs["command"] == call.args()
    assert kwargs["network_mode"] == "host" and "detach" not in kwargs
    assert kwargs["labels"] == {LABEL_RUN: "r1", LABEL_ROLE: stage.value}
    targets = [m["Target"] for m in kwargs["mounts"]]
    assert targets[0] == str(tmp_path.resolve())
    assert (DOCKER_SOCKET in targets) == traits.controls_servers
    assert kwargs["device_requests"][0]["Count"] == -1
    # the spec's CPUs are a share for stage containers, memory a hard limit
    assert kwargs["cpu_shares"] == 2048 and "nano_cpus" not in kwargs
    assert kwargs["mem_limit"] == 2**30
    env = kwargs["environment"]
    assert env[SPEC_ENV] == '{"platforms": ["onnxruntime"], "resources": {"cpus": 2, ' \
        '"memory_gb": 1}}'
    assert env["INFERBENCH_RUNTIME"] == "docker"
    assert env["INFERBENCH_HOME"] == str(tmp_path.resolve())


def test_a_stage_container_reads_the_workers_data_directories(tmp_path, monkeypatch):
    """A trace in a data directory outside the home is readable in the stage container as
    on the worker: the setting is passed, the directory mounted read-only at its path."""
    from operators.runners import DockerRunner

    home, data, missing = tmp_path / "home", tmp_path / "traces", tmp_path / "gone"
    home.mkdir()
    data.mkdir()
    monkeypatch.setenv("INFERBENCH_HOME", str(home))
    monkeypatch.setenv("INFERBENCH_GPUS", "none")
    monkeypatch.setenv("INFERBENCH_DATA_DIRS", f"{data}:{home / 'data'}:{missing}")
    runner = DockerRunner(image="inferbench/stage:test")
    kwargs = runner.create_kwargs(runner.container_spec(_call(Stage.MEASURE,
                                                              platform="onnxruntime",
                                                              config=0)))
    assert kwargs["environment"]["INFERBENCH_DATA_DIRS"] == f"{data}:{home / 'data'}:{missing}"
    from inferbench.containers import DOCKER_SOCKET

    mounts = {m["Target"]: m for m in kwargs["mounts"] if m["Target"] != DOCKER_SOCKET}
    # the home's own data directory comes with the home; a missing one is not mounted
    assert set(mounts) == {str(home.resolve()), str(data.resolve())}
    assert mounts[str(data.resolve())]["ReadOnly"] is True
    assert not mounts[str(home.resolve())].get("ReadOnly")
