"""The mlserver platform: the files `MLServerBackend.prepare` writes, the side environment it
runs from, its ONNX Runtime runtime (run in that environment with MLServer's own types and
batch merging, no server), and a real MLServer 1.7.1 started from the launch plan (HTTP
JSON, gRPC, adaptive batching, two workers, nothing left after the group is stopped, and
the server-side queue / compute counters read from its metrics port).

The runtime and live tests need the side environment (`python -m inferbench.sidevenv create
mlserver`, about 70 s once); they are skipped where it has not been created.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from inferbench import sidevenv
from inferbench.backends import get_backend
from inferbench.backends import mlserver as mls
from inferbench.backends.base import ServeContext, ServerConfig, ServerStats
from inferbench.backends.server_stats import split_ms
from inferbench.errors import InferBenchError
from inferbench.models.signature import single_input

MODEL = "tiny"
IN_FEATURES, OUT_FEATURES = 4, 3
side_env = pytest.mark.skipif(not sidevenv.is_current("mlserver"),
                              reason="side environment 'mlserver' not created; run "
                                     "`python -m inferbench.sidevenv create mlserver`")


def _context(workdir: Path, model_path: Path, server: ServerConfig | None = None,
             ports: tuple[int, int, int] = (18080, 18081, 18082)) -> ServeContext:
    return ServeContext(
        model_name=MODEL, model_path=model_path, inputs=single_input((IN_FEATURES,)),
        num_outputs=OUT_FEATURES, workdir=workdir, http_port=ports[0], grpc_port=ports[1],
        metrics_port=ports[2], max_batch_size=8, threads=2, server=server or ServerConfig())


def _prepared_batching_server(workdir: Path, model_path: Path):
    """Two workers behind the adaptive batcher (5 ms), on free ports, prepared: the backend,
    its context, the launch plan and the log file."""
    from inferbench.netutil import free_port

    backend = mls.MLServerBackend()
    ctx = _context(workdir, model_path,
                   ServerConfig(dynamic_batching=True, max_queue_delay_us=5000,
                                instance_count=2),
                   ports=(free_port(), free_port(), free_port()))
    backend.prepare(ctx)
    return backend, ctx, backend.launch_plan(ctx), ctx.workdir / "server.log"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """y = x @ W + b as an ONNX graph with a dynamic batch axis (built with onnx.helper: no
    exporter needed), with W and b for the reference answer."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    weight = rng.standard_normal((IN_FEATURES, OUT_FEATURES)).astype(np.float32)
    bias = rng.standard_normal(OUT_FEATURES).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["output"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", IN_FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", OUT_FEATURES])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime the side env may hold
    path = tmp_path_factory.mktemp("mlserver-model") / "model.onnx"
    onnx.save(model, str(path))
    return path, weight, bias


# --- the files prepare writes -------------------------------------------------------------

@pytest.fixture
def prepared(tmp_path, onnx_model, monkeypatch):
    """prepare() with the side environment taken as present (the files do not need it)."""
    monkeypatch.setattr(sidevenv, "ensure", lambda name, **_: sidevenv.bin_dir(name))

    def run(server: ServerConfig | None = None) -> tuple[ServeContext, Path]:
        ctx = _context(tmp_path / "mlserver-work", onnx_model[0], server)
        mls.MLServerBackend().prepare(ctx)
        return ctx, mls.repository(ctx)
    return run


def test_server_settings_ports_host_and_workers(prepared):
    ctx, repo = prepared(ServerConfig(instance_count=3))
    settings = json.loads((repo / "settings.json").read_text())
    assert settings == {
        "debug": False, "host": "127.0.0.1",
        "http_port": 18080, "grpc_port": 18081, "metrics_port": 18082,
        "metrics_endpoint": "/metrics",
        "parallel_workers": 3,  # one worker process per model instance
        "metrics_dir": str(repo / ".metrics"), "environments_dir": str(repo / ".envs"),
        "model_repository_root": str(repo), "load_models_at_startup": True,
        "server_name": "mlserver",
    }


def test_model_settings_without_batching(prepared, onnx_model):
    ctx, repo = prepared()
    settings = json.loads((repo / MODEL / "model-settings.json").read_text())
    assert settings == {
        "name": MODEL,
        "implementation": "inferbench_onnx_runtime.OnnxRuntimeModel",
        "platform": "onnxruntime",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, IN_FEATURES]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, OUT_FEATURES]}],
        "parameters": {"uri": str(onnx_model[0].resolve()), "extra": {
            "intra_op_threads": 2, "device": "cpu",
            "device_report": str(ctx.workdir / "serving-device.json")}},
        "max_batch_size": 0, "max_batch_time": 0.0,  # MLServer's "batching off"
    }
    runtime = (repo / MODEL / "inferbench_onnx_runtime.py").read_text()
    assert "class OnnxRuntimeModel(MLModel)" in runtime
    # It runs in MLServer's own environment, where inferbench is not installed.
    assert not re.search(r"^\s*(import|from)\s+inferbench\b", runtime, re.MULTILINE)


def test_model_settings_with_adaptive_batching(prepared):
    _, repo = prepared(ServerConfig(dynamic_batching=True, max_queue_delay_us=2500,
                                    preferred_batch_sizes=(4,)))
    settings = json.loads((repo / MODEL / "model-settings.json").read_text())
    assert settings["max_batch_size"] == 8          # ctx.max_batch_size, in requests
    assert settings["max_batch_time"] == 0.0025     # seconds


def test_zero_queue_delay_keeps_the_batcher_on(tmp_path):
    # MLServer turns batching off when max_batch_time <= 0.
    ctx = _context(tmp_path, tmp_path / "m.onnx",
                   ServerConfig(dynamic_batching=True, max_queue_delay_us=0))
    assert mls.batching(ctx) == {"max_batch_size": 8, "max_batch_time": 1e-6}


def test_prepare_starts_from_an_empty_repository(prepared):
    ctx, repo = prepared()
    stale = repo / "old_model" / "model-settings.json"
    stale.parent.mkdir()
    stale.write_text("{}")
    prepared()
    assert not stale.exists()


def test_prepare_needs_the_converted_model(tmp_path, monkeypatch):
    monkeypatch.setattr(sidevenv, "ensure", lambda name, **_: sidevenv.bin_dir(name))
    with pytest.raises(InferBenchError, match="convert stage"):
        mls.MLServerBackend().prepare(_context(tmp_path, tmp_path / "missing.onnx"))


def test_launch_plan_runs_mlserver_from_the_side_environment(tmp_path):
    backend = get_backend("mlserver")
    ctx = _context(tmp_path, tmp_path / "m.onnx")
    plan = backend.launch_plan(ctx)
    # MLServer's own command, through the start-up that times its REST layer
    assert plan.argv == [str(sidevenv.python("mlserver")),
                         str(tmp_path / "mlserver" / "inferbench_mlserver_start.py"), "start",
                         str(tmp_path / "mlserver")]
    assert plan.ready_path == f"/v2/models/{MODEL}/ready"
    assert backend.protocol == "kserve-v2-json"
    assert backend.grpc_protocol == "kserve-v2-grpc"
    assert backend.server_stats("http://127.0.0.1:1", MODEL, "http://127.0.0.1:2") is None


# --- the server-side counters ----------------------------------------------------------------

METRICS_TEXT = """\
# HELP inferbench_request_compute_seconds Inference seconds of each completed client request
# TYPE inferbench_request_compute_seconds histogram
inferbench_request_compute_seconds_bucket{le="0.005",model_name="tiny",model_version=""} 40.0
inferbench_request_compute_seconds_sum{model_name="tiny",model_version=""} 0.008
inferbench_request_compute_seconds_count{model_name="tiny",model_version=""} 40.0
inferbench_request_compute_seconds_sum{model_name="other",model_version=""} 9.0
# TYPE model_infer_request_duration summary
model_infer_request_duration_count{model="tiny",version="None"} 40.0
model_infer_request_duration_sum{model="tiny",version="None"} 0.2
model_infer_request_duration_sum{model="tiny",version="2"} 0.1
model_infer_request_duration_sum{model="other",version="None"} 5.0
# TYPE model_infer_request_success_total counter
model_infer_request_success_total{model="tiny",version="None"} 40.0
model_infer_request_success_total{model="tiny",version="2"} 10.0
model_infer_request_success_total{model="other",version="None"} 7.0
"""


def test_counters_from_the_metrics_text():
    """Summed over the model's versions; queue is the data plane's time less inference."""
    stats = mls.parse_metrics(METRICS_TEXT, MODEL)
    # Started without the REST timing (or before its first REST request): no stay timed.
    assert stats == ServerStats(requests=50, queue_ns=292_000_000, compute_ns=8_000_000,
                                total_ns=0, receive_ns=0, timed_requests=0)


def test_rest_stay_counters_give_the_handling_of_rest_points_only():
    rest = """inferbench_rest_requests_total 50.0
inferbench_rest_stay_seconds_total 0.5
inferbench_rest_receive_seconds_total 0.05
"""
    later = (METRICS_TEXT.replace("} 40.0", "} 90.0").replace("0.008", "0.108")
             .replace('version="None"} 0.2', 'version="None"} 0.4'))
    before = mls.parse_metrics(METRICS_TEXT, MODEL)
    after = mls.parse_metrics(later + rest, MODEL)
    assert after.timed_requests == 50 and after.total_ns == 500_000_000
    split = split_ms(before, after)
    # 50 more requests, all over REST: 10 ms in the server each, of it 4 ms in the data
    # plane (2 inferring); 1 ms each waiting for the body.
    assert split["server_requests"] == 50
    assert split["server_handling_ms"] == pytest.approx(10.0 - 4.0)
    assert split["server_receive_ms"] == pytest.approx(1.0)
    # Some of the point's requests came over gRPC: no mean stay of the point's requests.
    grpc = mls.parse_metrics(later + rest.replace("50.0", "30.0"), MODEL)
    assert "server_handling_ms" not in split_ms(before, grpc)


def test_counters_need_every_metric():
    # Before the first request MLServer's own metrics are missing; without the runtime's
    # metric there is no compute time.
    runtime_only = "\n".join(line for line in METRICS_TEXT.splitlines()
                             if "inferbench" in line)
    assert mls.parse_metrics(runtime_only, MODEL) is None
    mlserver_only = "\n".join(line for line in METRICS_TEXT.splitlines()
                              if "inferbench" not in line)
    assert mls.parse_metrics(mlserver_only, MODEL) is None
    assert mls.parse_metrics(METRICS_TEXT, "absent") is None


def test_counters_need_the_metrics_port():
    backend = mls.MLServerBackend()
    assert backend.server_stats("http://127.0.0.1:1", MODEL) is None


# --- the side environment -----------------------------------------------------------------

def test_side_env_location_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv(sidevenv.ENV_VAR, raising=False)
    assert sidevenv.path("mlserver") == Path(sys.prefix).resolve().parent / ".venvs" / "mlserver"
    monkeypatch.setenv(sidevenv.ENV_VAR, str(tmp_path))
    assert sidevenv.python("mlserver") == tmp_path / "mlserver" / "bin" / "python"
    assert not sidevenv.is_current("mlserver")  # nothing there


def test_unknown_side_env_lists_the_known_ones():
    with pytest.raises(InferBenchError, match="known: mlserver"):
        sidevenv.ensure("tensorflow-serving")


def test_stamp_follows_the_requirement_list(monkeypatch):
    before = sidevenv.stamp_value("mlserver")
    monkeypatch.setitem(sidevenv.REQUIREMENTS, "mlserver", ("mlserver==1.7.0",))
    assert sidevenv.stamp_value("mlserver") != before


def test_ensure_is_a_no_op_when_the_stamp_matches(tmp_path, monkeypatch):
    monkeypatch.setenv(sidevenv.ENV_VAR, str(tmp_path))
    env = tmp_path / "mlserver"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").touch()
    (env / ".inferbench-sidevenv").write_text(sidevenv.stamp_value("mlserver") + "\n")
    monkeypatch.setattr(sidevenv.subprocess, "run", _fail_if_called)
    assert sidevenv.ensure("mlserver") == env / "bin"


def _fail_if_called(*args, **kwargs):
    raise AssertionError(f"unexpected subprocess {args}")


def test_failed_creation_names_the_fix(tmp_path, monkeypatch):
    # pip failing is simulated (a real failure would need an unreachable index).
    monkeypatch.setenv(sidevenv.ENV_VAR, str(tmp_path))
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        if "pip" in argv:
            return subprocess.CompletedProcess(argv, 1, "", "ERROR: No matching distribution")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(sidevenv.subprocess, "run", fake_run)
    with pytest.raises(InferBenchError) as err:
        sidevenv.ensure("mlserver")
    message = str(err.value)
    assert "No matching distribution" in message
    assert "python" in message and "-m inferbench.sidevenv create mlserver" in message
    assert not (tmp_path / "mlserver" / ".inferbench-sidevenv").exists()
    assert calls[0][1:3] == ["-m", "venv"]


def test_cli_path(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(sidevenv.ENV_VAR, str(tmp_path))
    assert sidevenv.main(["path", "mlserver"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "mlserver")


# --- the runtime, in the side environment, without a server ---------------------------------

RUNTIME_CHECK = textwrap.dedent("""
    import asyncio, json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import mlserver.batching.adaptive
    from mlserver.codecs import NumpyCodec
    from mlserver.errors import InferenceError
    from mlserver.raw import inject_raw
    from mlserver.settings import ModelParameters, ModelSettings
    from mlserver.types import InferenceRequest, RequestInput
    from inferbench_onnx_runtime import OnnxRuntimeModel, decode_batch, requests_in
    # The class the adaptive batcher builds its batches with, once the runtime is imported.
    BatchedRequests = mlserver.batching.adaptive.BatchedRequests

    settings = ModelSettings(name="tiny", implementation=OnnxRuntimeModel,
                             parameters=ModelParameters(uri=sys.argv[2],
                                                        extra={"intra_op_threads": 1}))
    model = OnnxRuntimeModel(settings)
    asyncio.run(model.load())
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    out = {}

    # JSON: nested data as a V2 JSON request carries it
    json_input = RequestInput(name="input", datatype="FP32", shape=[3, 4], data=x.tolist())
    response = asyncio.run(model.predict(InferenceRequest(inputs=[json_input])))
    out["json"] = NumpyCodec.decode_output(response.outputs[0]).tolist()
    out["json_name"] = response.outputs[0].name
    out["json_dtype"] = response.outputs[0].datatype

    # gRPC raw_input_contents, unpacked into `data` the way MLServer's converter does
    raw_input = RequestInput(name="input", datatype="FP32", shape=[3, 4], data=[])
    inject_raw([raw_input], [x.tobytes()])
    out["raw_decoded"] = decode_batch(raw_input, "FP32", np.float32).tolist()

    # Adaptive batching: two requests merged by MLServer, answered once, split back
    a = RequestInput(name="input", datatype="FP32", shape=[1, 4], data=x[:1].ravel().tolist())
    b = RequestInput(name="input", datatype="FP32", shape=[2, 4], data=x[1:].ravel().tolist())
    batched = BatchedRequests({"a": InferenceRequest(inputs=[a]),
                               "b": InferenceRequest(inputs=[b])})
    merged = batched.merged_request
    out["merged_shape"] = merged.inputs[0].shape
    out["merged_requests"] = requests_in(merged)
    split = batched.split_response(asyncio.run(model.predict(merged)))
    out["split"] = {k: NumpyCodec.decode_output(v.outputs[0]).tolist() for k, v in split.items()}

    try:
        decode_batch(RequestInput(name="input", datatype="INT64", shape=[1], data=[1]), "FP32",
                     np.float32)
        out["dtype_error"] = None
    except InferenceError as exc:
        out["dtype_error"] = str(exc)
    # One JSON request and a merged one of two requests: three client requests inferred.
    from mlserver.metrics import REGISTRY
    compute = {s.name: s.value for m in REGISTRY.collect()
               if m.name == "inferbench_request_compute_seconds" for s in m.samples}
    out["compute_count"] = compute["inferbench_request_compute_seconds_count"]
    out["compute_sum"] = compute["inferbench_request_compute_seconds_sum"]
    print(json.dumps(out))
""")


@side_env
def test_runtime_decodes_runs_and_batches(tmp_path, onnx_model):
    path, weight, bias = onnx_model
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    (runtime_dir / "inferbench_onnx_runtime.py").write_text(
        files("inferbench.servers").joinpath("mlserver_runtime.py").read_text())
    result = subprocess.run([str(sidevenv.python("mlserver")), "-c", RUNTIME_CHECK,
                             str(runtime_dir), str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    expected = x @ weight + bias
    np.testing.assert_allclose(out["json"], expected, rtol=0, atol=1e-5)
    assert out["json_name"] == "output" and out["json_dtype"] == "FP32"
    np.testing.assert_array_equal(np.asarray(out["raw_decoded"], dtype=np.float32), x)
    assert out["merged_shape"] == [3, 4]
    assert out["merged_requests"] == 2
    assert out["compute_count"] == 3 and out["compute_sum"] > 0
    np.testing.assert_allclose(out["split"]["a"], expected[:1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["split"]["b"], expected[1:], rtol=0, atol=1e-5)
    assert "INT64" in out["dtype_error"]


@side_env
def test_a_gpu_the_side_environment_cannot_use_is_refused_before_mlserver_starts(prepared):
    """The CPU build of ONNX Runtime here: the probe lists no CUDA provider. (The GPU side
    environment is not created on this host; its CPU twin stands in for the probe.)"""
    from inferbench.errors import InferBenchError

    with pytest.raises(InferBenchError,
                       match=r"asked to run on gpu:0.*CPUExecutionProvider.*fix: a GPU worker"):
        mls._require_cuda_provider(mls.SIDE_ENV, "gpu:0")
    assert mls.side_env("gpu:1") == "mlserver-gpu" and mls.side_env("cpu") == "mlserver"


@side_env
def test_version_reads_the_side_environment():
    version = mls.MLServerBackend().version()
    assert version.startswith("mlserver 1.7.1 (onnxruntime ")
    assert "unknown" not in version


# --- a real server ----------------------------------------------------------------------------

@side_env
@pytest.mark.integration
def test_live_server_http_grpc_batching_and_clean_stop(tmp_path, onnx_model):
    import psutil

    from inferbench.backends.process import group_alive, spawn, stop_group, wait_ready
    from inferbench.load.protocols import Target, get_protocol

    path, weight, bias = onnx_model
    backend, ctx, plan, log = _prepared_batching_server(tmp_path / "work", path)
    started = time.perf_counter()
    process = spawn(plan, log)
    try:
        wait_ready(f"http://127.0.0.1:{ctx.http_port}{plan.ready_path}", process, 120, log)
        cold_start_s = time.perf_counter() - started
        members = [p for p in psutil.process_iter(["pid"])
                   if _pgid(p.info["pid"]) == process.pid]
        assert len(members) >= 3, "expected the server and its two workers"

        x = np.random.default_rng(5).standard_normal((3, IN_FEATURES), dtype=np.float32)
        expected = x @ weight + bias
        http = get_protocol(backend.protocol)
        target = Target(f"http://127.0.0.1:{ctx.http_port}", MODEL, "input", "output")
        status, headers, body = http.send_once(http.build(target, x))
        http.check(status, headers, body, 3)
        np.testing.assert_allclose(http.decode(headers, body)["output"], expected,
                                   rtol=0, atol=1e-5)

        grpc = get_protocol(backend.grpc_protocol)
        gtarget = Target(f"grpc://127.0.0.1:{ctx.grpc_port}", MODEL, "input", "output")
        status, headers, body = grpc.send_once(grpc.build(gtarget, x))
        grpc.check(status, headers, body, 3)
        np.testing.assert_allclose(grpc.decode(headers, body)["output"], expected,
                                   rtol=0, atol=1e-5)

        # Concurrent single-row requests go through the adaptive batcher and come back
        # to the right caller.
        def one(i: int) -> float:
            row = x[i % 3: i % 3 + 1]
            s, h, b = http.send_once(http.build(target, row))
            http.check(s, h, b, 1)
            return float(np.abs(http.decode(h, b)["output"] - expected[i % 3]).max())

        with ThreadPoolExecutor(8) as pool:
            assert max(pool.map(one, range(48))) < 1e-5
        print(f"mlserver cold start {cold_start_s:.2f} s")
    finally:
        stop_group(process.pid, grace_s=20.0)
    assert not group_alive(process.pid), "an MLServer process outlived its group's stop"


@side_env
@pytest.mark.integration
def test_live_server_counts_queue_and_compute_per_client_request(tmp_path, onnx_model):
    """The counters over a span of concurrent HTTP and gRPC requests, merged by the adaptive
    batcher into fewer inferences on two workers: one request counted per client request,
    and per request less inference and less server time than the client waited."""
    from inferbench.backends.process import spawn, stop_group, wait_ready
    from inferbench.load.protocols import Target, get_protocol

    path, _, _ = onnx_model
    backend, ctx, plan, log = _prepared_batching_server(tmp_path / "work", path)
    base_url = f"http://127.0.0.1:{ctx.http_port}"
    metrics_url = f"http://127.0.0.1:{ctx.metrics_port}"
    process = spawn(plan, log)
    try:
        wait_ready(f"{base_url}{plan.ready_path}", process, 120, log)
        x = np.random.default_rng(7).standard_normal((2, IN_FEATURES), dtype=np.float32)
        http = get_protocol(backend.protocol)
        grpc = get_protocol(backend.grpc_protocol)
        targets = {"http": (http, Target(base_url, MODEL, "input", "output")),
                   "grpc": (grpc, Target(f"grpc://127.0.0.1:{ctx.grpc_port}", MODEL,
                                         "input", "output"))}

        def one(transport: str) -> float:
            protocol, target = targets[transport]
            request = protocol.build(target, x)
            started = time.perf_counter()
            status, headers, body = protocol.send_once(request)
            latency_s = time.perf_counter() - started
            protocol.check(status, headers, body, 2)
            return latency_s

        one("http")  # MLServer's own metrics appear with the first request
        assert backend.server_stats(base_url, MODEL) is None  # no metrics port given
        before = backend.server_stats(base_url, MODEL, metrics_url)
        inferred_before = _metric_total(metrics_url, f"{mls.COMPUTE_METRIC}_count")
        batches_before = _metric_total(metrics_url, "parallel_request_queue_count")
        sent = ["http"] * 48 + ["grpc"] * 16
        with ThreadPoolExecutor(8) as pool:
            latencies = list(pool.map(one, sent))
        after = backend.server_stats(base_url, MODEL, metrics_url)
        inferred = _metric_total(metrics_url, f"{mls.COMPUTE_METRIC}_count") - inferred_before
        batches = _metric_total(metrics_url, "parallel_request_queue_count") - batches_before
        # Over REST alone the start-up's counters time each request's whole stay.
        rest_latencies = [one("http") for _ in range(8)]
        rest_split = split_ms(after, backend.server_stats(base_url, MODEL, metrics_url))
    finally:
        stop_group(process.pid, grace_s=20.0)

    assert before is not None and after is not None
    requests = after.requests - before.requests
    compute_ns = after.compute_ns - before.compute_ns
    queue_ns = after.queue_ns - before.queue_ns
    assert requests == len(sent)
    # The batcher merged requests into fewer inferences (calls handed to the workers), and
    # the runtime counted each inference once per client request in it.
    assert batches < len(sent)
    assert inferred == len(sent)
    assert compute_ns > 0 and queue_ns >= 0
    client_mean_s = sum(latencies) / len(latencies)
    split = split_ms(before, after)
    print(f"mlserver {requests} requests in {batches:g} inferences: queue "
          f"{split['server_queue_ms']:.3f} ms, compute {split['server_compute_ms']:.3f} ms, "
          f"client {client_mean_s * 1e3:.3f} ms per request")
    assert split["server_requests"] == len(sent)
    assert split["server_compute_ms"] / 1e3 < client_mean_s
    # The data plane times each request within the client's round trip.
    assert (split["server_queue_ms"] + split["server_compute_ms"]) / 1e3 < client_mean_s
    # A span with gRPC requests has no handling time (its REST timing covers only some).
    assert "server_handling_ms" not in split
    # The REST span has: the stay around the data plane, within the client's round trip.
    rest_inside = sum(rest_split[k] for k in ("server_queue_ms", "server_compute_ms",
                                              "server_handling_ms", "server_receive_ms"))
    assert rest_split["server_requests"] == 8 and rest_split["server_handling_ms"] > 0
    assert rest_inside / 1e3 < sum(rest_latencies) / len(rest_latencies)


def _metric_total(metrics_url: str, sample: str) -> float:
    """A sample of the metrics port, summed over its labels. parallel_request_queue_count:
    the calls MLServer's main process has handed to its workers (one per inference, the
    rare model or metadata call aside)."""
    import urllib.request

    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines()
              if re.split(r"[{\s]", line, maxsplit=1)[0] == sample]
    assert values, f"no {sample} on {metrics_url}/metrics"
    return sum(values)


def _pgid(pid: int) -> int | None:
    import os

    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
