"""The project's FastAPI server with its dynamic batcher on, started for real as the
onnxruntime backend starts it: concurrent requests are merged into fewer ONNX Runtime runs
(its statistics endpoint counts both) and every client gets exactly its own rows."""

from __future__ import annotations

import json
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from inferbench.backends.base import ServeContext, ServerConfig
from inferbench.backends.onnxruntime import OnnxRuntimeBackend
from inferbench.backends.process import spawn, stop_group, wait_ready
from inferbench.load import v2protocol
from inferbench.models.signature import single_input
from inferbench.netutil import free_port
from inferbench.spec import ModelSpec

pytestmark = pytest.mark.integration
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

SPEC = ModelSpec(family="fc", depth=1, width=16, input_shape=[8])
MAX_BATCH = 8


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from inferbench.models.generator import build_model

    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, and fast
        torch.onnx.export(build_model(SPEC), (torch.zeros(2, 8),), str(path), dynamo=False,
                          input_names=["input"], output_names=["output"], opset_version=17,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


def serve(tmp_path: Path, onnx_model: Path, server: ServerConfig):
    ctx = ServeContext(model_name="fc", model_path=onnx_model, inputs=single_input((8,)),
                       num_outputs=SPEC.num_outputs, workdir=tmp_path, http_port=free_port(),
                       grpc_port=free_port(), metrics_port=free_port(),
                       max_batch_size=MAX_BATCH, server=server)
    backend = OnnxRuntimeBackend()
    plan = backend.launch_plan(ctx)
    process = spawn(plan, tmp_path / "server.log")
    url = f"http://127.0.0.1:{ctx.http_port}"
    try:
        wait_ready(url + backend.ready_path(ctx), process, 60, tmp_path / "server.log")
    except BaseException:
        stop_group(process.pid)
        raise
    return url, process


def infer(url: str, batch: np.ndarray) -> np.ndarray:
    body, headers = v2protocol.encode_request({"input": batch}, "output")
    req = urllib.request.Request(f"{url}/v2/models/fc/infer", data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as response:
        outputs = v2protocol.decode_response(response.read(),
                                             response.headers.get(v2protocol.HEADER_LENGTH))
    return outputs["output"]


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/v2/models/fc/stats", timeout=10) as response:
        return json.loads(response.read())["model_stats"][0]


def reference(onnx_model: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": batch})[0]


@pytest.mark.parametrize(("server", "merged"), [
    (ServerConfig(dynamic_batching=True, max_queue_delay_us=200_000, instance_count=2), True),
    (ServerConfig(), False),
])
def test_concurrent_requests_through_the_real_server(tmp_path, onnx_model, server, merged):
    url, process = serve(tmp_path, onnx_model, server)
    try:
        rng = np.random.default_rng(5)
        inputs = [rng.standard_normal((1, 8), dtype=np.float32) for _ in range(16)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda x: infer(url, x), inputs))
        counters = stats(url)
    finally:
        assert stop_group(process.pid)
    expected = reference(onnx_model, np.concatenate(inputs))
    for i, result in enumerate(results):
        np.testing.assert_allclose(result, expected[i:i + 1], rtol=1e-5, atol=1e-6)
    assert counters["request_count"] == counters["inference_count"] == 16
    if merged:  # up to 8 one-row requests per run within 200 ms
        assert 2 <= counters["execution_count"] < 16, counters
    else:  # batching off: one run per request, exactly as before the batcher existed
        assert counters["execution_count"] == 16
    assert counters["queue_ns"] > 0 and counters["compute_ns"] > 0
