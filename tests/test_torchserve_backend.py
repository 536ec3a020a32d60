"""TorchServe backend: the registration and config it writes, its Prometheus counters, and
the handler's batching of raw tensors (with TorchServe's own context object). The live
server runs in tests/test_conformance.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from inferbench.backends.base import ServeContext, ServerConfig
from inferbench.backends.torchserve import (
    config_properties,
    model_registration,
    parse_prometheus_stats,
)
from inferbench.models.signature import single_input


def _ctx(tmp_path: Path, **server) -> ServeContext:
    return ServeContext(model_name="m", model_path=tmp_path / "m.pt",
                        inputs=single_input((3, 4, 4)),
                        num_outputs=10, workdir=tmp_path, http_port=9001, grpc_port=9002,
                        metrics_port=9003, max_batch_size=16, threads=1,
                        server=ServerConfig(**server))


def test_batching_maps_onto_batch_size_and_delay_in_ms(tmp_path):
    entry = model_registration(_ctx(tmp_path, dynamic_batching=True, max_queue_delay_us=1500,
                                    instance_count=2))["m"]["1.0"]
    assert (entry["batchSize"], entry["maxBatchDelay"]) == (16, 2)  # 1.5 ms rounds up
    assert (entry["minWorkers"], entry["maxWorkers"]) == (2, 2)
    off = model_registration(_ctx(tmp_path))["m"]["1.0"]
    assert (off["batchSize"], off["maxBatchDelay"], off["minWorkers"]) == (1, 0, 1)


def test_config_sets_every_port_and_turns_token_auth_off(tmp_path):
    text = config_properties(_ctx(tmp_path), tmp_path / "store",
                             {"management": 9004, "grpc_management": 9005})
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["inference_address"] == "http://127.0.0.1:9001"
    assert props["grpc_inference_port"] == "9002"
    assert props["metrics_address"] == "http://127.0.0.1:9003"
    assert props["management_address"] == "http://127.0.0.1:9004"
    assert props["grpc_management_port"] == "9005"
    assert props["disable_token_authorization"] == "true"
    assert props["metrics_mode"] == "prometheus"
    assert json.loads(props["models"])["m"]["1.0"]["marName"] == "m.mar"


PROMETHEUS = """\
# TYPE ts_queue_latency_microseconds counter
ts_queue_latency_microseconds{model_name="m",model_version="default",hostname="vm",} 3000.5
ts_queue_latency_microseconds{model_name="other",model_version="default",hostname="vm",} 9.0
# TYPE ts_inference_latency_microseconds counter
ts_inference_latency_microseconds{model_name="m",model_version="default",hostname="vm",} 10000.5
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="m",model_version="default",hostname="vm",} 4.0
"""


def test_prometheus_counters_split_queue_from_compute():
    stats = parse_prometheus_stats(PROMETHEUS, "m")
    assert (stats.requests, stats.queue_ns, stats.compute_ns) == (4, 3_000_500, 7_000_000)


def test_no_counters_before_the_first_request():
    assert parse_prometheus_stats("# TYPE QueueTime gauge\n", "m") is None


def test_counters_from_a_captured_torchserve_0_12_answer():
    # GET /metrics of a live TorchServe 0.12 (metrics_mode=prometheus) after 5 requests to
    # model "cnn": every default metric, labels with trailing commas, empty families.
    text = (Path(__file__).parent / "data" / "torchserve_0.12_metrics.txt").read_text()
    stats = parse_prometheus_stats(text, "cnn")
    assert (stats.requests, stats.queue_ns) == (5, 4_225_183_478)
    assert stats.compute_ns == pytest.approx(270_640_934, abs=1)  # 4495824.413 us - queue
    assert parse_prometheus_stats(text, "other") is None


def test_malformed_metrics_text_is_a_value_error():
    # server_stats catches ValueError and reports the point without a server-side split.
    with pytest.raises(ValueError):
        parse_prometheus_stats('ts_inference_requests_total{model_name="m"} x\n', "m")


class _Context:
    """The attributes of ts.context.Context the handler uses."""

    def __init__(self, model_dir: Path):
        self.system_properties = {"model_dir": str(model_dir)}
        self.manifest = {"model": {"serializedFile": "m.pt"}}
        self.headers: dict[int, dict[str, str]] = {}

    def set_response_content_type(self, index, value):
        self.headers.setdefault(index, {})["Content-Type"] = value

    def set_response_header(self, index, key, value):
        self.headers.setdefault(index, {})[key] = value


def test_handler_runs_a_server_batch_as_one_and_splits_the_answers(tmp_path):
    torch = pytest.importorskip("torch")
    from inferbench.servers import torchserve_handler

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10)).eval()
    torch.jit.trace(model, torch.zeros(1, 3, 4, 4)).save(str(tmp_path / "m.pt"))
    (tmp_path / "inferbench.json").write_text(json.dumps({
        "inputs": [{"name": "input", "dtype": "float32", "shape": [3, 4, 4]}], "threads": 1}))
    context = _Context(tmp_path)
    handler = torchserve_handler.RawTensorHandler()
    handler.initialize(context)
    a = np.random.default_rng(1).standard_normal((2, 3, 4, 4), dtype=np.float32)
    b = np.random.default_rng(2).standard_normal((1, 3, 4, 4), dtype=np.float32)
    answers = handler.handle([{"body": bytearray(a.tobytes())}, {"data": b.tobytes()}], context)
    with torch.inference_mode():
        expected = [model(torch.from_numpy(x)).numpy() for x in (a, b)]
    for index, (answer, want) in enumerate(zip(answers, expected, strict=True)):
        got = np.frombuffer(answer, dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert context.headers[index]["X-Output-Shape"] == ",".join(map(str, want.shape))
    with pytest.raises(ValueError, match="whole number of samples"):
        handler.handle([{"body": b"\0" * 12}], context)


def test_the_handler_reports_its_device_and_refuses_a_gpu_torch_cannot_use(tmp_path):
    """CPU torch here: the model's device is reported as the CPU; a GPU is refused by the
    handler (in TorchServe's worker) and, in seconds, by the backend before any start."""
    torch = pytest.importorskip("torch")
    from inferbench.backends.torchserve import TorchServeBackend
    from inferbench.errors import InferBenchError
    from inferbench.servers import torchserve_handler

    torch.jit.trace(torch.nn.Linear(48, 10), torch.zeros(1, 48)).save(str(tmp_path / "m.pt"))
    report = tmp_path / "serving-device.json"
    settings = {"inputs": [{"name": "input", "dtype": "float32", "shape": [48]}],
                "threads": 1, "device": "cpu", "device_report": str(report)}
    (tmp_path / "inferbench.json").write_text(json.dumps(settings))
    torchserve_handler.RawTensorHandler().initialize(_Context(tmp_path))
    assert json.loads(report.read_text())["device"] == "cpu"
    (tmp_path / "inferbench.json").write_text(json.dumps({**settings, "device": "gpu:0"}))
    with pytest.raises(RuntimeError, match="asked to run the model on gpu:0.*refusing"):
        torchserve_handler.RawTensorHandler().initialize(_Context(tmp_path))
    ctx = dataclasses.replace(_ctx(tmp_path), device="gpu:0")
    with pytest.raises(InferBenchError, match="sees 0 CUDA device.*fix: install a CUDA build"):
        TorchServeBackend().prepare(ctx)
    assert "number_of_gpu=1" in config_properties(ctx, tmp_path, {"management": 1,
                                                                  "grpc_management": 2})


def test_protocol_posts_raw_tensors_and_checks_the_answers_batch():
    from inferbench.errors import InferBenchError
    from inferbench.load.protocols import Target, get_protocol

    protocol = get_protocol("torchserve")
    batch = np.ones((3, 2), dtype=np.float32)
    request = protocol.build(Target("http://127.0.0.1:9001/", "m"), batch)
    assert request.url == "http://127.0.0.1:9001/predictions/m"
    assert request.body == batch.tobytes()
    answer = np.zeros((3, 10), dtype=np.float32).tobytes()
    protocol.check(200, {"x-output-shape": "3,10"}, answer, 3)
    assert protocol.decode({"x-output-shape": "3,10"}, answer)["output"].shape == (3, 10)
    with pytest.raises(InferBenchError, match="for a batch of 2"):
        protocol.check(200, {"x-output-shape": "3,10"}, answer, 2)
    # Other element types travel as their own bytes: the handler reads each input's type
    # from its settings (tests/test_multi_input.py runs it on int64 inputs).
    ids = np.arange(6, dtype=np.int64).reshape(3, 2)
    assert protocol.build(Target("http://h:1", "m"), ids).body == ids.tobytes()
