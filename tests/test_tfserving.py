"""TF Serving backend: what runs here (the model base path, models.config and batching
parameters it writes, the docker run it plans, its REST answers' decoding) and, where the
TF Serving image is present, the real server started by the serve stage.

TF Serving itself runs only from its Docker image, which cannot be pulled on the
development machine: the live test is skipped there with the reason, and nothing stands in
for TF Serving anywhere in this file.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from inferbench.backends import get_backend
from inferbench.backends.base import ServeContext, ServerConfig
from inferbench.backends.tfserving import (
    DEFAULT_IMAGE,
    IMAGE_ENV,
    TfServingBackend,
    batching_parameters,
    image,
)
from inferbench.errors import InferBenchError
from inferbench.load.protocols import Target, get_protocol
from inferbench.models.signature import single_input


def _ctx(tmp_path: Path, **server) -> ServeContext:
    model = tmp_path / "savedmodel"
    (model / "variables").mkdir(parents=True, exist_ok=True)
    (model / "saved_model.pb").write_bytes(b"not parsed by prepare")
    (model / "variables" / "variables.index").write_bytes(b"")
    return ServeContext(model_name="cnn_d1", model_path=model, inputs=single_input((3, 8, 8)),
                        num_outputs=10, workdir=tmp_path / "work", http_port=18501,
                        grpc_port=18500, metrics_port=18502, max_batch_size=8, threads=2,
                        server=ServerConfig(**server))


def test_registered_with_its_format_and_protocols():
    backend = get_backend("tfserving")
    assert isinstance(backend, TfServingBackend)
    assert backend.model_format.value == "savedmodel"
    assert get_protocol(backend.protocol).name == "tfserving-rest"
    assert get_protocol(backend.grpc_protocol).name == "tfserving-grpc"


def test_prepare_writes_the_model_base_path_and_config(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.workdir.mkdir()
    (ctx.workdir / "batching_parameters.txt").write_text("stale")
    TfServingBackend().prepare(ctx)
    version = ctx.workdir / "models" / "cnn_d1" / "1"
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()
    assert not (ctx.workdir / "batching_parameters.txt").exists()  # batching is off
    config = (ctx.workdir / "models.config").read_text()
    model_server_config_pb2 = pytest.importorskip(
        "tensorflow_serving.config.model_server_config_pb2")
    from google.protobuf import text_format

    parsed = text_format.Parse(config, model_server_config_pb2.ModelServerConfig())
    (entry,) = parsed.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == \
        ("cnn_d1", "/models/cnn_d1", "tensorflow")
    assert list(entry.model_version_policy.specific.versions) == [1]


def test_prepare_refuses_a_missing_savedmodel(tmp_path):
    ctx = _ctx(tmp_path)
    shutil.rmtree(ctx.model_path)
    with pytest.raises(InferBenchError, match="convert stage must export the savedmodel"):
        TfServingBackend().prepare(ctx)


def test_batching_parameters_follow_the_server_config(tmp_path):
    ctx = _ctx(tmp_path, dynamic_batching=True, max_queue_delay_us=500,
               preferred_batch_sizes=(4, 2), instance_count=3)
    text = batching_parameters(ctx)
    assert text.splitlines() == [
        "max_batch_size { value: 8 }", "batch_timeout_micros { value: 500 }",
        "num_batch_threads { value: 3 }",
        # increasing, and ending with max_batch_size, as TF Serving requires
        "allowed_batch_sizes: 2", "allowed_batch_sizes: 4", "allowed_batch_sizes: 8"]
    plain = batching_parameters(_ctx(tmp_path, dynamic_batching=True))
    assert "allowed_batch_sizes" not in plain
    TfServingBackend().prepare(ctx)
    assert (ctx.workdir / "batching_parameters.txt").read_text() == text


def test_launch_plan_is_a_supervised_docker_run_of_the_image(tmp_path, monkeypatch):
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    monkeypatch.delenv("INFERBENCH_RUNTIME", raising=False)
    ctx = _ctx(tmp_path, dynamic_batching=True, instance_count=2)
    backend = TfServingBackend()
    plan = backend.launch_plan(ctx)
    assert plan.argv[1:4] == ["-m", "inferbench.backends.tfserving", "inferbench-tfserving-18501"]
    docker = plan.argv[4:]
    assert docker[:4] == ["docker", "run", "--rm", "--init"]
    assert "127.0.0.1:18501:8501" in docker and "127.0.0.1:18500:8500" in docker
    assert f"{ctx.workdir.resolve() / 'models'}:/models:ro" in docker
    at = docker.index(DEFAULT_IMAGE)
    assert docker[at - 2:at] == ["--entrypoint", "tensorflow_model_server"]
    flags = docker[at + 1:]
    assert {"--port=8500", "--rest_api_port=8501", "--model_config_file=/config/models.config",
            "--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=2",
            "--enable_batching=true", "--batching_parameters_file=/config/batching.txt"} \
        <= set(flags)
    assert plan.ready_path == "/v1/models/cnn_d1"
    monkeypatch.setenv(IMAGE_ENV, "local/tfserving:test")
    assert image() == "local/tfserving:test" in backend.launch_plan(ctx).argv
    assert backend.version() == "tensorflow_model_server (local/tfserving:test)"
    assert backend.server_stats("http://127.0.0.1:1", "m") is None
    assert "--cpuset-cpus" not in docker


def test_pinned_cpus_reach_the_container_not_only_the_cli_that_starts_it(tmp_path):
    ctx = dataclasses.replace(_ctx(tmp_path), cpus=(1, 2))
    docker = TfServingBackend().docker_argv(ctx)
    at = docker.index("--cpuset-cpus")
    assert docker[at + 1] == "1-2" and at < docker.index("--entrypoint")


def test_launch_plan_refuses_the_docker_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERBENCH_RUNTIME", "docker")
    with pytest.raises(InferBenchError, match="local runtime"):
        TfServingBackend().launch_plan(_ctx(tmp_path))


def test_rest_decode_single_and_named_outputs():
    protocol = get_protocol("tfserving-rest")
    single = json.dumps({"predictions": [[1.0, 2.0], [3.0, 4.0]]}).encode()
    np.testing.assert_array_equal(protocol.decode({}, single)["output"],
                                  np.array([[1, 2], [3, 4]], np.float32))
    protocol.check(200, {}, single, 2)
    named = json.dumps({"predictions": [{"a": [1.0], "b": 2.0}, {"a": [3.0], "b": 4.0}]})
    decoded = protocol.decode({}, named.encode())
    assert decoded["a"].shape == (2, 1) and decoded["b"].tolist() == [2.0, 4.0]
    with pytest.raises(InferBenchError, match="not a TF-Serving predict answer"):
        protocol.decode({}, b'{"error": "Servable not found"}')


# --- live: the real TF Serving image -------------------------------------------------------

def _image_missing_reason() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI"
    try:
        result = subprocess.run(["docker", "image", "inspect", image()], capture_output=True,
                                text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker image inspect failed: {exc}"
    if result.returncode != 0:
        return (f"TF Serving image {image()!r} not available (docker image inspect: "
                f"{(result.stderr or result.stdout).strip()[:200]}); set {IMAGE_ENV} or pull it")
    return None


_MISSING = _image_missing_reason()
SPEC = {
    "name": "tfserving-live",
    "model": {"family": "cnn", "depth": 1, "width": 8, "input_shape": [3, 16, 16]},
    "formats": ["savedmodel"], "platforms": ["tfserving"], "batch_sizes": [3],
    "workload": {"arrival": "closed_loop", "concurrency": 1, "seed": 5},
    "slo": {"percentile": 99, "latency_ms": 100},
}


@pytest.mark.needs_tfserving_image
@pytest.mark.integration
@pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))
def test_real_tfserving_serves_the_savedmodel(pg_home, db_url, monkeypatch):
    """The serve stage starts the real TF Serving container; one REST and one gRPC Predict
    give the PyTorch model's outputs; the teardown removes the container."""
    pytest.importorskip("tensorflow")
    import torch

    from inferbench.backends.process import group_alive
    from inferbench.models.generator import build_model
    from inferbench.stages import STAGES
    from inferbench.stages.common import make_context

    monkeypatch.setenv("INFERBENCH_HOME", str(pg_home))
    monkeypatch.setenv("INFERBENCH_DB_URL", db_url)
    ctx = make_context("tfserving-live", spec_json=json.dumps(SPEC))
    STAGES["generate"](ctx)
    STAGES["convert"](ctx)
    batch = np.random.default_rng(11).standard_normal((3, 3, 16, 16), dtype=np.float32)
    with torch.inference_mode():
        expected = build_model(ctx.spec.model)(torch.from_numpy(batch)).numpy()
    endpoint = STAGES["serve"](ctx, "tfserving")
    try:
        assert endpoint["status"] == "ready" and endpoint["cold_start_s"] > 0
        for name, url in (("tfserving-rest", endpoint["url"]),
                          ("tfserving-grpc", endpoint["grpc_url"])):
            protocol = get_protocol(name)
            target = Target(url, endpoint["model_name"], "input", "output")
            status, headers, body = protocol.send_once(protocol.build(target, batch))
            protocol.check(status, headers, body, len(batch))
            np.testing.assert_allclose(protocol.decode(headers, body)["output"], expected,
                                       atol=1e-4, rtol=1e-3)
    finally:
        STAGES["stop"](ctx, "tfserving")
    assert not group_alive(endpoint["pid"])
    names = subprocess.run(["docker", "ps", "-aq", "--filter",
                            "name=inferbench-tfserving-"], capture_output=True, text=True,
                           check=False).stdout.split()
    assert names == []


def test_supervisor_removes_the_container_on_sigterm_with_a_stub_docker_cli(tmp_path):
    """Stopping the process group (what the serve stage's teardown does) ends `docker run`
    and also runs `docker rm -f <name>`. The docker CLI here is a stub script that logs its
    arguments (no daemon on the dev machine); TF Serving is not involved."""
    import os
    import sys
    import time

    from inferbench.backends.base import LaunchPlan
    from inferbench.backends.process import spawn, stop_group

    log = tmp_path / "docker.log"
    stub = tmp_path / "bin" / "docker"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$@" >> {log}\n[ "$1" = run ] && exec sleep 60\nexit 0\n')
    stub.chmod(0o755)
    plan = LaunchPlan(argv=[sys.executable, "-m", "inferbench.backends.tfserving", "ctr-x",
                            "docker", "run", "--rm", "image"],
                      env={"PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"})
    process = spawn(plan, tmp_path / "server.log")
    deadline = time.monotonic() + 20
    while not (log.exists() and "run" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stop_group(process.pid, grace_s=15)
    assert log.read_text().splitlines() == ["run --rm image", "rm -f ctr-x"]
