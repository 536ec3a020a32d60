"""Results carry the hardware the model really ran on. On a GPU host a model served on the
CPU is labelled, priced and metered as the CPU; only a server that reports running the
model on the GPU gets the GPU's name, price and NVML energy.

No GPU here: the host's GPU and its power samples are fake NVML readings written into the
run's provenance and resource samples, as the sampler would on a GPU worker (named so in
each test). The device itself comes from the serve stage (the real servers' answers are
checked in tests/test_pipeline.py)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, select, update
from test_predictions_db import PLATFORM, write_run

from analysis.cost import hardware_name
from inferbench import perfdb
from inferbench.errors import InferBenchError
from inferbench.models.signature import single_input
from inferbench.perfdb import schema
from inferbench.stages import STAGES
from inferbench.stages.common import read_json, write_json

pytestmark = pytest.mark.integration

FAKE_GPU = {"name": "NVIDIA H100 80GB HBM3", "driver": "fake", "memory_bytes": 80 * 2**30}


def _collected_on_a_fake_gpu_host(run_id: str, tmp_path, db_url, device: str | None,
                                  counter_w: float | None = None):
    """A measured run collected as on a host whose NVML lists one GPU drawing 300 W
    through every point (fake NVML), its server process busy on one core (fake sampler
    readings); its server reported running on `device`. With `counter_w`, the fake GPU
    also has NVML's total-energy counter, rising at that many watts."""
    ctx, files = write_run(run_id, tmp_path, db_url, predictions=False)
    endpoint = read_json(files.endpoint)
    if device is not None:
        endpoint["device"] = device
    write_json(files.endpoint, endpoint)
    STAGES["collect"](ctx, PLATFORM)
    load = read_json(files.load)
    start = min(p["started_ns"] for p in load["points"])
    end = max(p["ended_ns"] for p in load["points"])
    t = schema.provenance
    with perfdb.engine(db_url).begin() as conn:
        for row in conn.execute(select(t).where(t.c.run_id == run_id)).all():
            facts = {**row.facts, "gpus": [FAKE_GPU]}
            conn.execute(update(t).where(t.c.run_id == run_id, t.c.platform == row.platform,
                                         t.c.config_index == row.config_index)
                         .values(facts=json.loads(json.dumps(facts))))
        conn.execute(insert(schema.resource_samples), [
            {"run_id": run_id, "platform": PLATFORM, "config_index": 0, "source": source,
             "t_ns": ts, "cpu_pct": 100.0 if source == "server" else None,
             "gpu_util_pct": 50.0 if source == "gpu0" else None,
             "gpu_power_w": 300.0 if source == "gpu0" else None,
             "gpu_energy_mj": (int(counter_w * (ts - start) / 1e6)
                               if source == "gpu0" and counter_w else None)}
            for source in ("gpu0", "server")
            for ts in range(start - 10**8, end + 10**8, 10**8)])
    return ctx


def _labels(db_url: str, run_id: str) -> tuple[str, set, set]:
    with perfdb.engine(db_url).connect() as conn:
        hardware = conn.execute(select(schema.runs.c.hardware).where(
            schema.runs.c.run_id == run_id)).scalar_one()
        rows = conn.execute(select(schema.results.c.energy_method,
                                   schema.results.c.usd_per_hour).where(
            schema.results.c.run_id == run_id)).all()
    return hardware, {r.energy_method for r in rows}, {r.usd_per_hour for r in rows}


def test_a_model_served_on_the_cpu_of_a_fake_nvml_gpu_host_is_labelled_cpu(db_url, tmp_path):
    ctx = _collected_on_a_fake_gpu_host("truth-cpu", tmp_path, db_url, device="cpu")
    STAGES["analyze"](ctx)
    hardware, methods, prices = _labels(db_url, "truth-cpu")
    assert hardware.startswith("cpu:") and "H100" not in hardware
    assert methods == {"estimate_cpu_tdp"}  # the GPU's 300 W are not this model's
    assert all(p is None or p < 5 for p in prices)  # a CPU instance's price, or none


def test_a_model_served_on_the_gpu_of_a_fake_nvml_host_is_labelled_priced_metered_by_it(
        db_url, tmp_path):
    ctx = _collected_on_a_fake_gpu_host("truth-gpu", tmp_path, db_url, device="gpu:0")
    STAGES["analyze"](ctx)
    hardware, methods, prices = _labels(db_url, "truth-gpu")
    assert hardware == FAKE_GPU["name"] and methods == {"nvml_power"}
    assert prices == {11.06}  # the cheapest H100 row of analysis/data/instance_prices.csv
    report = (ctx.run_dir.report_dir / "report.html").read_text()
    assert "H100 SXM5 (this GPU: NVIDIA H100 80GB HBM3, datasheet)" in report  # its roof
    assert "H100 SXM5 (reference)" not in report


def test_a_gpu_with_nvml_s_energy_counter_is_metered_by_the_counter(db_url, tmp_path):
    """Fake NVML: the counter rises at 250 W while the power readings say 300 W, so the
    figure shows which source analyze used."""
    ctx = _collected_on_a_fake_gpu_host("truth-counter", tmp_path, db_url, device="gpu:0",
                                        counter_w=250.0)
    STAGES["analyze"](ctx)
    r, p = schema.results, schema.points
    with perfdb.engine(db_url).connect() as conn:
        rows = conn.execute(select(r.c.energy_method, r.c.energy_j_per_request, r.c.n_ok,
                                   p.c.started_ns, p.c.ended_ns)
                            .join(p, (p.c.run_id == r.c.run_id) & (p.c.point == r.c.point))
                            .where(r.c.run_id == "truth-counter")).all()
    assert rows
    start = min(row.started_ns for row in rows)
    grid = range(start - 10**8, max(row.ended_ns for row in rows) + 10**8, 10**8)
    for row in rows:  # the counter's rise between the point's first and last samples
        inside = [t for t in grid if row.started_ns <= t <= row.ended_ns]
        assert row.energy_method == "nvml_energy_counter"
        assert row.energy_j_per_request == pytest.approx(
            250.0 * (inside[-1] - inside[0]) / 1e9 / row.n_ok, rel=0.01)


def test_the_energy_counter_is_read_only_while_it_counts_forward():
    from analysis.cost import energy_from_nvml_counter_j

    assert energy_from_nvml_counter_j([1000, float("nan"), 4000]) == 3.0
    assert energy_from_nvml_counter_j([5000, 100]) is None  # the driver reloaded
    assert energy_from_nvml_counter_j([1000]) is None


def test_a_deployment_recorded_before_devices_were_asked_counts_as_cpu(db_url, tmp_path):
    ctx = _collected_on_a_fake_gpu_host("truth-old", tmp_path, db_url, device=None)
    STAGES["analyze"](ctx)
    assert _labels(db_url, "truth-old")[0].startswith("cpu:")


def test_hardware_name_is_where_the_model_ran():
    assert hardware_name([FAKE_GPU], 16) == "cpu:16vcpu"
    assert hardware_name([FAKE_GPU], 16, "gpu:0") == FAKE_GPU["name"]
    with pytest.raises(InferBenchError, match="provenance lists 0 GPU"):
        hardware_name([], 16, "gpu:0")


# On this GPU-less host, with the project's CPU builds of ONNX Runtime and torch: asking
# for a GPU fails with the reason, never a quiet run on the CPU.

def test_onnxruntime_asked_for_a_gpu_it_cannot_use_refuses_instead_of_falling_back(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from inferbench.servers.runtimes import load_onnxruntime

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"])], "relu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph), path)
    assert load_onnxruntime(str(path), 1, None).device == "cpu"
    with pytest.raises(InferBenchError) as refused:
        load_onnxruntime(str(path), 1, None, device="gpu:0")
    assert "asked to run on gpu:0 but runs on ['CPUExecutionProvider']" in str(refused.value)
    assert "fix: install onnxruntime-gpu" in str(refused.value)


def test_torchscript_asked_for_a_gpu_without_cuda_refuses(tmp_path):
    import torch

    from inferbench.servers.runtimes import load_torchscript

    path = tmp_path / "linear.pt"
    torch.jit.trace(torch.nn.Linear(4, 2), torch.zeros(1, 4)).save(str(path))
    assert load_torchscript(str(path), 1, single_input([4]), device="cpu").device == "cpu"
    with pytest.raises(InferBenchError, match="sees 0 CUDA device.*fix: install a CUDA build"):
        load_torchscript(str(path), 1, single_input([4]), device="gpu:0")


def test_a_server_running_elsewhere_than_the_hardware_fails_its_deployment():
    from inferbench.stages.serve import _check_device

    _check_device("triton", "gpu", "gpu:0")  # gpu is the first GPU
    for asked, runs_on in [("gpu:0", "cpu"), ("cpu", "gpu:0"), ("gpu:1", "gpu:0")]:
        with pytest.raises(InferBenchError, match=f"asked to run the model on {asked} "
                                                   f"\\(hardware\\) but its server runs it on "
                                                   f"{runs_on}"):
            _check_device("triton", asked, runs_on)


def test_a_spec_asking_a_gpu_of_a_cpu_only_platform_is_refused_with_the_fix():
    from inferbench.spec import example_spec, parse_spec

    spec = {**example_spec().model_dump(mode="json"), "platforms": ["openvino"],
            "formats": ["onnx"], "hardware": "gpu"}
    with pytest.raises(InferBenchError) as refused:
        parse_spec(spec)
    message = str(refused.value)
    assert "platforms ['openvino'] cannot run a model on the GPU" in message
    assert 'fix: list only those platforms, or set hardware to "cpu"' in message
    assert parse_spec({**spec, "hardware": "cpu"}).hardware == "cpu"
    assert parse_spec({**spec, "platforms": ["onnxruntime"], "hardware": "gpu:1"}).hardware \
        == "gpu:1"


def test_the_sampler_reads_a_fake_nvml_s_energy_counter_where_the_gpu_has_one(monkeypatch):
    """A fake pynvml with two GPUs: the first has the total-energy counter, the second
    answers NOT_SUPPORTED (pre-Volta), which the sampler then stops asking."""
    import types

    from inferbench.metrics.sampler import _Nvml

    class NVMLError(Exception):
        pass

    asked = {0: 0, 1: 0}

    def energy(handle):
        asked[handle] += 1
        if handle == 1:
            raise NVMLError("Not Supported")
        return 1_000_000 + 500 * asked[handle]

    fake = types.SimpleNamespace(
        NVMLError=NVMLError, nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=40),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=2**30),
        nvmlDeviceGetPowerUsage=lambda h: 250_000, nvmlDeviceGetTotalEnergyConsumption=energy)
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    nvml = _Nvml()
    rows = nvml.sample(1) + nvml.sample(2)
    assert [(r["source"], r["gpu_energy_mj"]) for r in rows] == [
        ("gpu0", 1_000_500), ("gpu1", None), ("gpu0", 1_001_000), ("gpu1", None)]
    assert rows[0]["gpu_power_w"] == 250.0 and asked[1] == 1


def test_onnxruntime_asks_tensorrt_then_cuda_where_a_fake_provider_list_has_them(monkeypatch):
    """A fake ONNX Runtime GPU build (fake provider list and session, named so): TensorRT's
    provider is asked first where the build has it, then CUDA's, on the spec's GPU; the
    runtime says which one runs the model."""
    import onnxruntime as ort

    from inferbench.servers.runtimes import load_onnxruntime

    asked = []

    class FakeSession:
        def __init__(self, path, options, providers):
            asked.append(providers)
            self._active = [p[0] if isinstance(p, tuple) else p for p in providers]

        def get_providers(self):
            return self._active

        def get_inputs(self):
            return []

        def get_outputs(self):
            return []

    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    runtime = load_onnxruntime("fake.onnx", 1, None, device="gpu:1")
    assert asked[-1] == [("TensorrtExecutionProvider", {"device_id": 1}),
                         ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert (runtime.device, runtime.accelerator) == ("gpu:1", "Tensorrt")
    monkeypatch.setattr(ort, "get_available_providers", lambda: [
        "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert load_onnxruntime("fake.onnx", 1, None, device="gpu:0").accelerator == "CUDA"
    assert load_onnxruntime("fake.onnx", 1, None).accelerator is None


def test_triton_s_device_and_accelerator_are_read_from_a_fake_model_config_endpoint(tmp_path):
    """A fake Triton (a local HTTP server answering the model config endpoint, named so):
    a KIND_GPU instance group on GPU 1 with TensorRT named is gpu:1 / tensorrt; a CPU group
    is the CPU with no accelerator."""
    import http.server
    import threading

    from inferbench.backends.base import ServeContext
    from inferbench.backends.triton import TritonBackend

    answers = {}

    class FakeTriton(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = json.dumps(answers["config"]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeTriton)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    ctx = ServeContext(model_name="m", model_path=tmp_path / "m.onnx", inputs=single_input((4,)),
                       num_outputs=2, workdir=tmp_path, http_port=1, grpc_port=2,
                       metrics_port=3, max_batch_size=1, device="gpu:1")
    try:
        answers["config"] = {"backend": "onnxruntime", "instance_group": [
            {"kind": "KIND_GPU", "gpus": [1], "count": 1}], "optimization": {
            "execution_accelerators": {"gpu_execution_accelerator": [{"name": "tensorrt"}]}}}
        got = TritonBackend().serving_device(ctx, url)
        assert (got.device, got.accelerator) == ("gpu:1", "tensorrt")
        answers["config"] = {"backend": "python", "instance_group": [{"kind": "KIND_CPU"}]}
        got = TritonBackend().serving_device(ctx, url)
        assert (got.device, got.accelerator) == ("cpu", None)
    finally:
        server.shutdown()
