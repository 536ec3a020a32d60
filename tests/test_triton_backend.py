"""The triton platform against the real `tritonserver` from the nvidia-pytriton wheel.

Builds a small CNN, exports it to ONNX, lets `TritonBackend` write the model repository and
launch plan, starts the server exactly as the plan says (own session, so one killpg stops
it and its Python-backend stub), and checks KServe V2 binary-tensor inference against ONNX
Runtime run in-process on the same input. A cold start takes well under a second here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest

from inferbench.backends.base import Backend, LaunchPlan, ServeContext, ServerConfig
from inferbench.backends.triton import TritonBackend
from inferbench.errors import InferBenchError
from inferbench.netutil import free_port
from inferbench.spec import ModelSpec

pytestmark = [pytest.mark.triton, pytest.mark.integration]

try:
    distribution("nvidia-pytriton")
except PackageNotFoundError:
    pytest.skip("nvidia-pytriton (the tritonserver binary) is not installed",
                allow_module_level=True)
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")  # the dynamo ONNX exporter needs it

SPEC = ModelSpec(family="cnn", depth=1, width=8, input_shape=[3, 16, 16])
MODEL_NAME = "cnn_small"
MAX_BATCH = 8
READY_TIMEOUT_S = 60.0  # cold start measured ~0.6 s on 2 CPU cores; generous for CI
STOP_GRACE_S = 20.0     # graceful stop (stub shutdown, shm cleanup) measured ~3.5 s
HEADER_LENGTH = "Inference-Header-Content-Length"
PROCESS_NAMES = {"tritonserver", "triton_python_backend_stub"}


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN exported with a dynamic batch axis.

    torch 2.13's default exporter (dynamo=True, needs onnxscript) is used, as the project's
    converter (inferbench.stages.convert) does. It writes the weights to `model.onnx.data`
    beside the graph, which also checks that the backend serves the file in place. It takes
    ~5 s; the legacy TorchScript exporter (dynamo=False) takes 0.1 s but is deprecated.
    """
    from inferbench.models.generator import build_model  # needs torch: after the skip

    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    model = build_model(SPEC)
    example = torch.zeros((2, *SPEC.input_shape), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecation noise
        torch.onnx.export(
            model, (example,), str(path), input_names=[Backend.input_name],
            output_names=[Backend.output_name],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), dynamo=True,
            verbose=False,
        )
    assert path.with_name("model.onnx.data").exists()  # weights beside the graph
    return path


@dataclass
class Server:
    ctx: ServeContext
    plan: LaunchPlan
    process: subprocess.Popen
    log_path: Path
    cold_start_s: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.ctx.grpc_port}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _context(workdir: Path, onnx_path: Path,
             server: ServerConfig | None = None) -> ServeContext:
    return ServeContext(
        model_name=MODEL_NAME, model_path=onnx_path, inputs=SPEC.generated_inputs,
        num_outputs=SPEC.num_outputs, workdir=workdir, http_port=free_port(),
        grpc_port=free_port(), metrics_port=free_port(), max_batch_size=MAX_BATCH, threads=1,
        server=server or ServerConfig(),
    )


def _start(workdir: Path, onnx_path: Path, server: ServerConfig | None = None) -> Server:
    """Prepare, spawn in a new session, and wait for the model's readiness URL."""
    backend = TritonBackend()
    ctx = _context(workdir, onnx_path, server)
    backend.prepare(ctx)
    plan = backend.launch_plan(ctx)
    log_path = workdir / "tritonserver.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            plan.argv, env={**os.environ, **plan.env}, cwd=plan.cwd, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Server(ctx, plan, process, log_path, cold_start_s=0.0)
    ready_url = server.url + plan.ready_path
    try:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"tritonserver exited with {process.returncode} before "
                                     f"it was ready:\n{server.log_tail()}")
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise AssertionError(f"tritonserver not ready after {READY_TIMEOUT_S} s:\n"
                                     f"{server.log_tail()}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet, or model not loaded yet (400)
            time.sleep(0.05)
    except BaseException:
        _stop(process.pid)
        raise
    server.cold_start_s = time.monotonic() - started
    return server


def _group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, executable name) of the live, non-zombie processes in process group `pgid`.

    The name comes from argv[0]: the kernel's process name is cut to 15 characters."""
    import psutil

    members = []
    for proc in psutil.process_iter(["pid", "name", "status", "cmdline"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                argv = proc.info["cmdline"] or [proc.info["name"]]
                members.append((proc.info["pid"], Path(argv[0]).name))
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _stop(pgid: int) -> bool:
    """SIGTERM the group, SIGKILL it after the grace period. True if it left gracefully."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + STOP_GRACE_S
    graceful = False
    while time.monotonic() < deadline:
        _reap(pgid)
        if not _group_members(pgid):
            graceful = True
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.5)
    _reap(pgid)
    return graceful


def _reap(pid: int) -> None:
    """Collect the exited leader, so it does not linger as a zombie of this process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path) -> Iterator[Server]:
    running = _start(tmp_path_factory.mktemp("triton"), onnx_model)
    try:
        yield running
    finally:
        _stop(running.process.pid)


def _infer(server: Server, batch: np.ndarray) -> tuple[dict, np.ndarray]:
    """One KServe V2 request with the binary tensor extension, built by hand from the spec:
    JSON header, then the raw little-endian float32 bytes; the output is asked for as binary."""
    raw = np.ascontiguousarray(batch, dtype="<f4").tobytes()
    header = json.dumps({
        "inputs": [{"name": Backend.input_name, "shape": list(batch.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": Backend.output_name, "parameters": {"binary_data": True}}],
    }).encode()
    request = urllib.request.Request(
        f"{server.url}/v2/models/{MODEL_NAME}/infer", data=header + raw, method="POST",
        headers={HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body, header_length = response.read(), response.headers[HEADER_LENGTH]
    assert header_length is not None, f"response has no binary part: {body!r}"
    meta = json.loads(body[:int(header_length)])
    (output,) = meta["outputs"]
    size = output["parameters"]["binary_data_size"]
    data = np.frombuffer(body[int(header_length):], dtype="<f4", count=size // 4)
    return output, data.reshape(output["shape"])


def _reference(onnx_path: Path, batch: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    return session.run([Backend.output_name], {Backend.input_name: batch})[0]


def test_prepare_writes_repository_and_backend(tmp_path: Path, onnx_model: Path) -> None:
    backend = TritonBackend()
    ctx = _context(tmp_path, onnx_model)
    backend.prepare(ctx)
    model_dir = tmp_path / "model_repository" / MODEL_NAME
    config = _config(model_dir / "config.pbtxt")
    assert (config.backend, config.max_batch_size) == ("python", MAX_BATCH)
    assert list(config.input[0].dims) == [3, 16, 16]
    assert list(config.output[0].dims) == [SPEC.num_outputs]
    assert [g.Kind.Name(g.kind) for g in config.instance_group] == ["KIND_CPU"]
    assert config.parameters["onnx_path"].string_value == str(onnx_model.resolve())
    assert "import inferbench" not in (model_dir / "1" / "model.py").read_text()
    stub = tmp_path / "backends" / "python" / "triton_python_backend_stub"
    assert os.access(stub, os.X_OK)
    # Preparing again starts from a clean repository instead of failing on leftovers.
    (tmp_path / "model_repository" / "stale_model").mkdir()
    backend.prepare(ctx)
    assert sorted(p.name for p in (tmp_path / "model_repository").iterdir()) == [MODEL_NAME]


def test_prepare_rejects_paths_the_python_backend_cannot_launch(tmp_path: Path,
                                                               onnx_model: Path) -> None:
    # The stub is started through `bash -c` with unquoted paths: a space would make the
    # model load hang instead of failing, so prepare refuses up front.
    ctx = _context(tmp_path / "with space", onnx_model)
    with pytest.raises(InferBenchError, match="spaces and shell metacharacters"):
        TritonBackend().prepare(ctx)


def test_launch_plan_binds_loopback_and_given_ports(tmp_path: Path, onnx_model: Path) -> None:
    ctx = _context(tmp_path, onnx_model)
    plan = TritonBackend().launch_plan(ctx)
    assert Path(plan.argv[0]).name == "tritonserver"
    for flag in (f"--http-port={ctx.http_port}", f"--grpc-port={ctx.grpc_port}",
                 f"--metrics-port={ctx.metrics_port}", "--http-address=127.0.0.1",
                 "--strict-readiness=true", "--allow-metrics=true"):
        assert flag in plan.argv
    assert plan.ready_path == f"/v2/models/{MODEL_NAME}/ready"
    assert "nvidia_pytriton.libs" in plan.env["LD_LIBRARY_PATH"]


def test_version_reports_tritonserver_release() -> None:
    version = TritonBackend().version()
    assert version.startswith("tritonserver ") and "unknown" not in version, version


@pytest.mark.parametrize("batch_size", [1, 4])
def test_binary_inference_matches_onnxruntime(server: Server, onnx_model: Path,
                                              batch_size: int) -> None:
    rng = np.random.default_rng(batch_size)
    batch = rng.standard_normal((batch_size, *SPEC.input_shape), dtype=np.float32)
    output, result = _infer(server, batch)
    assert output["name"] == Backend.output_name and output["datatype"] == "FP32"
    assert output["shape"] == [batch_size, SPEC.num_outputs]
    np.testing.assert_allclose(result, _reference(onnx_model, batch), rtol=0, atol=1e-5)


def test_load_generator_codec_interoperates(server: Server, onnx_model: Path) -> None:
    """The project's own V2 codec (used by the load generator) against real Triton."""
    from inferbench.load.v2protocol import HEADER_LENGTH as CODEC_HEADER
    from inferbench.load.v2protocol import decode_response, encode_request

    batch = np.random.default_rng(7).standard_normal((2, *SPEC.input_shape), dtype=np.float32)
    body, headers = encode_request({Backend.input_name: batch}, Backend.output_name)
    request = urllib.request.Request(f"{server.url}/v2/models/{MODEL_NAME}/infer", data=body,
                                     headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        outputs = decode_response(response.read(), response.headers.get(CODEC_HEADER))
    np.testing.assert_allclose(outputs[Backend.output_name], _reference(onnx_model, batch),
                               rtol=0, atol=1e-5)


def test_grpc_protocol_matches_onnxruntime(server: Server, onnx_model: Path) -> None:
    """The load generator's KServe V2 gRPC client against Triton's gRPC port: metadata,
    and outputs equal to ONNX Runtime's."""
    from tritonclient.grpc import service_pb2

    from inferbench.load.protocols import Target
    from inferbench.load.protocols.kserve_grpc import (
        INFER_METHOD,
        KServeV2Grpc,
        decode_outputs,
        model_metadata,
        unary_call,
    )

    meta = model_metadata(server.grpc_url, MODEL_NAME)
    assert meta["inputs"][0]["name"] == Backend.input_name
    assert meta["outputs"][0]["name"] == Backend.output_name
    batch = np.random.default_rng(8).standard_normal((3, *SPEC.input_shape), dtype=np.float32)
    protocol, target = KServeV2Grpc(), Target(server.grpc_url, MODEL_NAME, Backend.input_name,
                                              Backend.output_name)
    protocol.probe(target, batch)
    response = unary_call(server.grpc_url, INFER_METHOD, protocol.request_message(target, batch),
                      service_pb2.ModelInferResponse, 30)
    np.testing.assert_allclose(decode_outputs(response)[Backend.output_name],
                               _reference(onnx_model, batch), rtol=0, atol=1e-5)


@pytest.mark.parametrize("load_args", [
    ["--arrival", "poisson", "--rate", "60"],
    ["--arrival", "closed_loop", "--concurrency", "2"],
], ids=["poisson", "closed_loop"])
def test_inferbench_load_over_grpc(server: Server, capsys, load_args) -> None:
    """`inferbench load --protocol kserve-v2-grpc` drives Triton over gRPC: every request
    answered, the summary and verdict as over HTTP (late sends not judged on this host)."""
    from inferbench.cli import main

    code = main(["load", "--endpoint", server.grpc_url, "--model", MODEL_NAME,
                 "--protocol", "kserve-v2-grpc", *load_args, "--duration", "2",
                 "--min-requests", "50", "--warmup", "0.5", "--max-late-pct", "100",
                 "--stability-windows", "0", "--json"])
    out = capsys.readouterr()
    s = json.loads(out.out)
    assert code == 0 and s["verdict"] == "VALID", (s["reasons"], out.err)
    assert s["n_ok"] >= 50 and s["n_failed"] == 0
    assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p99"]
    if load_args[1] == "poisson":
        assert 40 < s["throughput_rps"] < 80


def test_grpc_errors_name_the_fix(server: Server, capsys) -> None:
    from inferbench.cli import main

    code = main(["load", "--endpoint", server.grpc_url, "--model", "no-such-model",
                 "--protocol", "kserve-v2-grpc", "--rate", "10", "--duration", "1"])
    assert code == 1 and "ModelMetadata failed" in capsys.readouterr().err
    code = main(["load", "--endpoint", server.url, "--model", MODEL_NAME,
                 "--protocol", "kserve-v2-grpc", "--rate", "10", "--duration", "1"])
    assert code == 1 and "grpc://HOST:PORT" in capsys.readouterr().err


def test_statistics_extension_counts_queue_and_compute(server: Server) -> None:
    """The counters the load stage reads around each point, from real Triton."""
    backend = TritonBackend()
    before = backend.server_stats(server.url, MODEL_NAME)
    assert before is not None
    batch = np.zeros((2, *SPEC.input_shape), dtype=np.float32)
    for _ in range(3):
        _infer(server, batch)
    after = backend.server_stats(server.url, MODEL_NAME)
    assert after.requests == before.requests + 3
    assert after.compute_ns > before.compute_ns and after.queue_ns >= before.queue_ns
    assert backend.server_stats(server.url, "no-such-model") is None


def test_oversized_batch_is_rejected(server: Server) -> None:
    batch = np.zeros((MAX_BATCH + 1, *SPEC.input_shape), dtype=np.float32)
    with pytest.raises(urllib.error.HTTPError) as caught:
        _infer(server, batch)
    assert caught.value.code == 400
    assert f"must be <= {MAX_BATCH}" in caught.value.read().decode()


def test_metrics_endpoint_serves_prometheus(server: Server) -> None:
    url = f"http://127.0.0.1:{server.ctx.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    assert "nv_inference_request_success" in text


def test_stopping_the_group_leaves_no_process(tmp_path: Path, onnx_model: Path) -> None:
    """A server of its own, so stopping it cannot disturb the shared one."""
    running = _start(tmp_path, onnx_model)
    pgid = running.process.pid
    try:
        _infer(running, np.zeros((1, *SPEC.input_shape), dtype=np.float32))
        # The stub is forked into the server's group: that is what lets one killpg stop it.
        assert {name for _, name in _group_members(pgid)} >= PROCESS_NAMES
    finally:
        graceful = _stop(pgid)
    left = [(pid, name) for pid, name in _group_members(pgid) if name in PROCESS_NAMES]
    assert not left, f"processes left in group {pgid}: {left}"
    assert running.process.poll() is not None
    assert graceful, "tritonserver needed SIGKILL to stop"
    # A graceful stop also removes the Python backend's shared-memory regions.
    prefix = f"inferbench_{running.ctx.http_port}_"
    shm = Path("/dev/shm")
    if shm.is_dir():
        assert not [p.name for p in shm.iterdir() if p.name.startswith(prefix)]


def _config(path: Path):
    """config.pbtxt parsed as Triton parses it."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_config_without_batching_is_one_instance_and_no_batcher(tmp_path: Path,
                                                                onnx_model: Path) -> None:
    from tritonclient.grpc import model_config_pb2

    from inferbench.backends.triton import scheduling

    config = model_config_pb2.ModelConfig()
    scheduling(config, _context(tmp_path, onnx_model))
    assert [(g.count, g.Kind.Name(g.kind)) for g in config.instance_group] == [(1, "KIND_CPU")]
    assert not config.HasField("dynamic_batching")


def test_config_maps_the_server_config(tmp_path: Path, onnx_model: Path) -> None:
    server = ServerConfig(dynamic_batching=True, max_queue_delay_us=500,
                          preferred_batch_sizes=(4, 8), instance_count=2)
    ctx = _context(tmp_path, onnx_model, server)
    TritonBackend().prepare(ctx)
    config = _config(tmp_path / "model_repository" / MODEL_NAME / "config.pbtxt")
    assert [(g.count, g.Kind.Name(g.kind)) for g in config.instance_group] == [(2, "KIND_CPU")]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.max_batch_size == MAX_BATCH  # the batcher's largest batch


def _model_stats(server: Server) -> dict:
    url = f"{server.url}/v2/models/{MODEL_NAME}/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        (stats,) = json.loads(response.read())["model_stats"]
    return stats


def test_dynamic_batching_merges_concurrent_requests(tmp_path: Path, onnx_model: Path) -> None:
    """Real Triton with its dynamic batcher on and two instances: 16 concurrent one-sample
    requests are answered correctly, each with its own rows, in fewer model executions than
    requests (Triton's statistics extension counts both)."""
    from concurrent.futures import ThreadPoolExecutor

    server_config = ServerConfig(dynamic_batching=True, max_queue_delay_us=200_000,
                                 preferred_batch_sizes=(MAX_BATCH,), instance_count=2)
    running = _start(tmp_path, onnx_model, server_config)
    try:
        stubs = [n for _, n in _group_members(running.process.pid)
                 if n == "triton_python_backend_stub"]
        assert len(stubs) == 2, stubs  # one stub process per model instance
        rng = np.random.default_rng(11)
        inputs = [rng.standard_normal((1, *SPEC.input_shape), dtype=np.float32)
                  for _ in range(16)]
        before = _model_stats(running)
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda x: _infer(running, x)[1], inputs))
        after = _model_stats(running)
    finally:
        _stop(running.process.pid)
    expected = _reference(onnx_model, np.concatenate(inputs))
    for i, result in enumerate(results):
        np.testing.assert_allclose(result, expected[i:i + 1], rtol=0, atol=1e-5)
    requests = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == 16
    # 200 ms of queue delay gathers up to 8 requests per execution; 16 separate executions
    # would mean no batching happened at all.
    assert 2 <= executions < 16, (executions, after["batch_stats"])
