"""Triton from NVIDIA's image (GPU hosts): the repository for the image's onnxruntime backend
and the launch in the docker runtime. The image cannot be pulled on this machine, so these
tests check what is generated, not a live server; no server is imitated."""

from __future__ import annotations

import pytest

from inferbench.backends.base import ServeContext, ServerConfig
from inferbench.backends.triton import ACCELERATOR_ENV, IMAGE_ENV, TritonBackend
from inferbench.errors import InferBenchError
from inferbench.models.signature import single_input

IMAGE = "nvcr.io/nvidia/tritonserver:24.09-py3"


def _ctx(tmp_path, device: str = "cpu", **server) -> ServeContext:
    model = tmp_path / "model" / "model.onnx"
    model.parent.mkdir(exist_ok=True)
    model.write_bytes(b"onnx")
    (model.parent / "model.onnx.data").write_bytes(b"weights")
    return ServeContext(model_name="cnn", model_path=model, inputs=single_input((3, 8, 8)),
                        num_outputs=10, workdir=tmp_path / "triton", http_port=8000,
                        grpc_port=8001, metrics_port=8002, max_batch_size=8, threads=2,
                        server=ServerConfig(**server), device=device)


def _config(path):
    """config.pbtxt parsed as Triton parses it."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture
def image(monkeypatch):
    monkeypatch.setenv(IMAGE_ENV, IMAGE)
    monkeypatch.delenv(ACCELERATOR_ENV, raising=False)


def test_repository_for_the_onnxruntime_backend_on_the_gpu(tmp_path, image, monkeypatch):
    monkeypatch.setenv("INFERBENCH_GPUS", "1")
    ctx = _ctx(tmp_path, "gpu", dynamic_batching=True, max_queue_delay_us=500,
               instance_count=2)
    TritonBackend().prepare(ctx)
    model_dir = ctx.workdir / "model_repository" / "cnn"
    assert (model_dir / "1" / "model.onnx").read_bytes() == b"onnx"
    assert (model_dir / "1" / "model.onnx.data").read_bytes() == b"weights"
    config = _config(model_dir / "config.pbtxt")
    assert (config.backend, config.max_batch_size) == ("onnxruntime", 8)
    assert [(g.count, g.Kind.Name(g.kind)) for g in config.instance_group] == [(2, "KIND_GPU")]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.parameters["intra_op_thread_count"].string_value == "2"
    assert not config.HasField("optimization")  # no TensorRT
    assert not (ctx.workdir / "backends").exists()  # no Python backend from the wheel


def test_tensorrt_accelerator_needs_and_uses_the_gpu(tmp_path, image, monkeypatch):
    monkeypatch.setenv(ACCELERATOR_ENV, "tensorrt")
    monkeypatch.setenv("INFERBENCH_GPUS", "1")
    ctx = _ctx(tmp_path, "gpu:0")
    TritonBackend().prepare(ctx)
    config = _config(ctx.workdir / "model_repository" / "cnn" / "config.pbtxt")
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    with pytest.raises(InferBenchError, match="needs a GPU"):
        TritonBackend().prepare(_ctx(tmp_path))  # hardware "cpu"


def test_cpu_hardware_gets_cpu_instances_even_on_a_gpu_worker(tmp_path, image, monkeypatch):
    monkeypatch.setenv("INFERBENCH_GPUS", "1")
    ctx = _ctx(tmp_path)
    TritonBackend().prepare(ctx)
    config = _config(ctx.workdir / "model_repository" / "cnn" / "config.pbtxt")
    assert [g.Kind.Name(g.kind) for g in config.instance_group] == ["KIND_CPU"]


def test_launch_runs_the_image_with_the_same_endpoints(tmp_path, image, monkeypatch):
    monkeypatch.setenv("INFERBENCH_GPUS", "none")
    ctx = _ctx(tmp_path)
    plan = TritonBackend().launch_plan(ctx)
    assert plan.image == IMAGE and plan.argv[0] == "tritonserver"
    assert f"--model-repository={ctx.workdir / 'model_repository'}" in plan.argv
    assert {"--http-port=8000", "--grpc-port=8001", "--metrics-port=8002",
            "--strict-readiness=true"} <= set(plan.argv)
    assert not any(a.startswith("--backend-directory") for a in plan.argv)
    assert TritonBackend().version() == f"tritonserver image {IMAGE}"


def test_an_image_plan_is_refused_by_the_local_runtime(tmp_path, image, monkeypatch):
    from inferbench.backends.base import LaunchPlan
    from inferbench.paths import ConfigFiles
    from inferbench.server_grid import LabelledConfig, ResolvedConfig
    from inferbench.stages import serve

    monkeypatch.setenv("INFERBENCH_RUNTIME", "local")
    ctx = _ctx(tmp_path)

    class Stage:  # the parts of StageContext the serve stage reads before it starts anything
        run_id = "r"

    plan = LaunchPlan(argv=["tritonserver"], image=IMAGE)
    monkeypatch.setattr(serve, "serve_context", lambda *_a, **_k: ctx)
    monkeypatch.setattr(serve, "get_backend", lambda _p: _ImageBackend(plan))
    monkeypatch.setattr(serve, "resolve_config", lambda *_a: ResolvedConfig(
        "triton", LabelledConfig(0, "db=off,inst=1", ServerConfig()), ConfigFiles(tmp_path)))
    monkeypatch.setattr(serve, "write_json", lambda *_a: None)
    stage = Stage()
    stage.run_dir = _RunDir(tmp_path)
    from inferbench.spec import example_spec

    stage.spec = example_spec()  # its sharing: none
    with pytest.raises(InferBenchError, match="needs the docker runtime"):
        serve.run(stage, "triton")


class _ImageBackend(TritonBackend):
    def __init__(self, plan):
        self._plan = plan

    def prepare(self, ctx):
        pass

    def launch_plan(self, ctx):
        return self._plan


class _RunDir:
    def __init__(self, root):
        self.root = root

    def endpoint_file(self, platform, config):
        return self.root / f"{platform}-{config}.json"


def test_unknown_accelerator_is_refused(tmp_path, image, monkeypatch):
    monkeypatch.setenv(ACCELERATOR_ENV, "openvino")
    with pytest.raises(InferBenchError, match="INFERBENCH_TRITON_ACCELERATOR"):
        TritonBackend().prepare(_ctx(tmp_path))
