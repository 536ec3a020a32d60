"""Conformance of every serving platform that runs on this machine: the same model and the
same input give the same outputs (within the spec's conversion tolerance) on each; the model
is ready when the serve stage says so, its cold start is recorded, and the teardown leaves no
process of the server behind, also when the server's main process crashed first (its
children: Triton's stubs, TorchServe's Java frontend and Python workers, MLServer's workers).
Each platform runs for real, started by the serve stage."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import numpy as np
import pytest

from inferbench.backends import get_backend
from inferbench.backends.process import group_alive
from inferbench.load.protocols import Target, get_protocol
from inferbench.models.signature import as_inputs, batch_size_of, sample_inputs
from inferbench.stages import STAGES
from inferbench.stages.common import make_context

pytestmark = pytest.mark.integration

LOCAL_PLATFORMS = ["onnxruntime", "torchscript", "openvino", "triton", "torchserve", "mlserver"]
# The well-known architectures on every platform but the first are the heavier tier.
LOCAL_PLATFORMS_SLOW_BEYOND_FIRST = [
    p if i == 0 else pytest.param(p, marks=pytest.mark.slow)
    for i, p in enumerate(LOCAL_PLATFORMS)]
SPEC = {
    "name": "conformance",
    "model": {"family": "cnn", "depth": 1, "width": 8, "input_shape": [3, 16, 16]},
    "formats": ["onnx", "torchscript"],
    "platforms": LOCAL_PLATFORMS,
    "batch_sizes": [3],
    "workload": {"arrival": "closed_loop", "concurrency": 1, "seed": 5},
    "slo": {"percentile": 99, "latency_ms": 100},
}
ATOL = 1e-4


# A well-known architecture at full size, one image per request (its outputs reach ~100:
# compared with the conversion check's relative tolerance too).
RESNET50 = {**SPEC, "name": "conformance-resnet50", "model": {"architecture": "resnet50"},
            "batch_sizes": [1]}
RESNET50_RTOL = 1e-3


# A language model at full size with its two int64 inputs (token ids, attention mask) at
# sequence 128, one request of one sequence: integers and several inputs through each
# platform's own client and server.
BERT_BASE = {**SPEC, "name": "conformance-bert", "model": {"architecture": "bert_base"},
             "batch_sizes": [1]}


def _converted(pg_home, db_url, spec: dict):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFERBENCH_HOME", str(pg_home))
        mp.setenv("INFERBENCH_DB_URL", db_url)
        ctx = make_context(spec["name"], spec_json=json.dumps(spec))
        STAGES["generate"](ctx)
        STAGES["convert"](ctx)
        yield ctx


@pytest.fixture(scope="module")
def converted(pg_home, db_url):
    """One generated and converted model for every platform."""
    yield from _converted(pg_home, db_url, SPEC)


@pytest.fixture(scope="module")
def converted_resnet50(pg_home, db_url):
    yield from _converted(pg_home, db_url, RESNET50)


@pytest.fixture(scope="module")
def converted_bert(pg_home, db_url):
    yield from _converted(pg_home, db_url, BERT_BASE)


def reference_outputs(ctx, batch: dict[str, np.ndarray]) -> np.ndarray:
    """The original PyTorch model's answer, rebuilt from the spec (same seed)."""
    import torch

    from inferbench.models.generator import build_model

    model = build_model(ctx.spec.model).eval()
    with torch.inference_mode():
        return model(*map(torch.from_numpy, batch.values())).numpy()


@pytest.mark.parametrize("platform", LOCAL_PLATFORMS)
def test_platform_conforms(converted, platform):
    batch = np.random.default_rng(11).standard_normal((3, 3, 16, 16), dtype=np.float32)
    _serves_like_pytorch(converted, platform, batch, rtol=0)


@pytest.mark.parametrize("platform", LOCAL_PLATFORMS_SLOW_BEYOND_FIRST)
def test_resnet50_conforms(converted_resnet50, platform):
    batch = np.random.default_rng(12).standard_normal((1, 3, 224, 224), dtype=np.float32)
    _serves_like_pytorch(converted_resnet50, platform, batch, rtol=RESNET50_RTOL)


@pytest.mark.parametrize("platform", LOCAL_PLATFORMS_SLOW_BEYOND_FIRST)
def test_bert_base_conforms(converted_bert, platform):
    batch = sample_inputs(converted_bert.spec.model.generated_inputs, 1, np.random.default_rng(13))
    assert batch["input_ids"].dtype == np.int64 and batch["input_ids"].shape == (1, 128)
    _serves_like_pytorch(converted_bert, platform, batch, rtol=RESNET50_RTOL)


def _serves_like_pytorch(ctx, platform: str, batch, rtol: float) -> None:
    backend = get_backend(platform)
    endpoint = STAGES["serve"](ctx, platform)
    try:
        assert endpoint["status"] == "ready" and endpoint["cold_start_s"] > 0
        assert endpoint["platform_version"]
        base = endpoint["url"]
        with urllib.request.urlopen(base + endpoint["ready_path"], timeout=10) as ready:
            assert ready.status == 200  # ready means the model, not just the port
        # Through the platform's own client, as the load stage talks to it.
        protocol = get_protocol(backend.protocol)
        target = Target(base, endpoint["model_name"], backend.input_name, backend.output_name)
        batch = as_inputs(batch, backend.input_name)
        status, headers, body = protocol.send_once(protocol.build(target, batch))
        protocol.check(status, headers, body, batch_size_of(batch))
        outputs = protocol.decode(headers, body)
        np.testing.assert_allclose(outputs[backend.output_name], reference_outputs(ctx, batch),
                                   rtol=rtol, atol=ATOL)
    finally:
        STAGES["stop"](ctx, platform)
    assert not group_alive(endpoint["pid"]), f"{platform}: the server outlived its teardown"


def _group_members(pgid: int) -> list[str]:
    """Live (non-zombie) processes of a process group, as "pid name" strings."""
    import psutil

    members = []
    for proc in psutil.process_iter(["pid", "name", "status"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != "zombie":
                members.append(f"{proc.info['pid']} {proc.info['name']}")
        except (ProcessLookupError, psutil.Error):
            continue
    return members


@pytest.mark.parametrize("platform", LOCAL_PLATFORMS)
def test_teardown_after_a_crash_leaves_no_process(converted, platform):
    ctx = converted
    endpoint = STAGES["serve"](ctx, platform)
    pid = endpoint["pid"]
    try:
        children = [m for m in _group_members(pid) if not m.startswith(f"{pid} ")]
        os.kill(pid, signal.SIGKILL)  # the server's main process dies, its children do not
        os.waitpid(pid, 0)
    finally:
        STAGES["stop"](ctx, platform)
    import time

    deadline = time.monotonic() + 2.0  # processes already killed may take a moment to exit
    while _group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_members(pid), (f"{platform}: left behind after a crash and the "
                                     f"teardown: {_group_members(pid)} (children were "
                                     f"{children})")


def test_unknown_platform_lists_the_known_ones():
    from inferbench.errors import InferBenchError

    with pytest.raises(InferBenchError) as err:
        get_backend("tensorrt-llm")
    assert all(p in str(err.value) for p in LOCAL_PLATFORMS)
