"""GPU sharing through NVIDIA MPS (inferbench/gpu_sharing.py): refused where it cannot run
(this host has no MPS: the refusals are real), and its lifecycle around a server checked
with a FAKE MPS control program (tests/fakes/mps), named so, since no GPU is here."""

from __future__ import annotations

import os

import pytest
from test_pipeline import SPEC, converted

from inferbench.errors import InferBenchError
from inferbench.gpu_sharing import (
    MPS_CONTROL,
    check_mps_available,
    mps_env,
    mps_running,
    start_mps,
    stop_mps,
)
from inferbench.spec import spec_from_conf
from inferbench.stages import STAGES
from inferbench.stages.common import read_json

FAKE_MPS = os.path.join(os.path.dirname(__file__), "fakes", "mps")
# ONNX only: TorchScript is traced on the serving device, which this host has not.
GPU_MPS = {**SPEC, "formats": ["onnx"], "hardware": "gpu", "sharing": "mps"}


@pytest.fixture
def fake_mps(monkeypatch):
    monkeypatch.setenv("PATH", FAKE_MPS + os.pathsep + os.environ["PATH"])


def test_mps_is_refused_on_the_cpu_in_containers_and_without_the_program(monkeypatch, tmp_path):
    with pytest.raises(InferBenchError, match="sharing 'mps' shares a GPU.*hardware is 'cpu'"):
        spec_from_conf({**SPEC, "sharing": "mps"})
    with pytest.raises(InferBenchError, match="'docker' runtime serves from containers"):
        check_mps_available("docker")
    monkeypatch.setenv("PATH", str(tmp_path))  # no MPS program, as on this host
    with pytest.raises(InferBenchError, match=f"{MPS_CONTROL} is not on this worker's PATH"):
        check_mps_available("local")


def test_the_daemon_starts_once_and_stops_with_a_fake_mps_control(fake_mps, tmp_path):
    env = mps_env(f"test|{tmp_path}", tmp_path / "mps-log")
    assert len(env["CUDA_MPS_PIPE_DIRECTORY"]) < 40  # socket paths are short
    try:
        started = start_mps(env, "local")
        assert started["mode"] == "mps" and mps_running(env)
        pid = open(os.path.join(env["CUDA_MPS_PIPE_DIRECTORY"], "fake-mps-daemon.pid")).read()
        start_mps(env, "local")  # a retry keeps the running daemon
        assert open(os.path.join(env["CUDA_MPS_PIPE_DIRECTORY"],
                                 "fake-mps-daemon.pid")).read() == pid
    finally:
        assert stop_mps(env) is True
    assert not mps_running(env) and stop_mps(env) is False


@pytest.mark.integration
def test_a_server_asked_to_share_a_gpu_through_fake_mps_stops_its_daemon_when_it_fails(
        fake_mps, inferbench_env):
    """hardware gpu on this GPU-less host: the serve stage starts the (fake) MPS daemon for
    the server, ONNX Runtime's CPU build then refuses the GPU, and the failed start quits
    the daemon; the endpoint keeps what was started."""
    ctx = converted("gpu-mps", {**GPU_MPS, "name": "gpu-mps"})
    files = ctx.run_dir.config_files("onnxruntime", 0)
    with pytest.raises(InferBenchError):
        STAGES["serve"](ctx, "onnxruntime")
    endpoint = read_json(files.endpoint)
    assert endpoint["status"] == "failed" and endpoint["sharing"] == "mps"
    assert endpoint["mps_started_at"] >= endpoint["started_at"]
    assert not mps_running(endpoint["mps"])
    log = os.path.join(endpoint["mps"]["CUDA_MPS_LOG_DIRECTORY"], "control.log")
    assert "fake MPS control daemon started" in open(log).read()
    assert STAGES["stop"](ctx, "onnxruntime")["configs"] == {0: False}  # nothing left
