"""Triton's config.pbtxt as the backend writes it (ModelConfig messages through protobuf's
text format), against the text the backend wrote by hand before: the same message.
No server; the live ones are in tests/test_triton_backend.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inferbench.backends.base import ServeContext, ServerConfig
from inferbench.backends.triton import image_model_config, model_config, scheduling
from inferbench.errors import InferBenchError
from inferbench.models.signature import single_input

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

TENSORS = ('name: "cnn"\nmax_batch_size: 8\n'
           'input [ { name: "input" data_type: TYPE_FP32 dims: [ 3, 8, 8 ] } ]\n'
           'output [ { name: "output" data_type: TYPE_FP32 dims: [ 10 ] } ]\n')
# Written by the hand-made renderer this replaced, for the same contexts as below.
OLD_PYTHON_BACKEND = (
    TENSORS + 'backend: "python"\n'
    'instance_group [ { count: 1 kind: KIND_CPU } ]\n'
    'parameters: { key: "onnx_path" value: { string_value: "/runs/a \\"q\\"\\\\b/model.onnx" } }\n'
    'parameters: { key: "site_packages" value: { string_value: "/v/site-packages:/v/lib64" } }\n'
    'parameters: { key: "intra_op_threads" value: { string_value: "2" } }\n')
OLD_PYTHON_BACKEND_BATCHING = (
    TENSORS + 'backend: "python"\n'
    'instance_group [ { count: 2 kind: KIND_CPU } ]\n'
    'dynamic_batching { max_queue_delay_microseconds: 500 preferred_batch_size: [ 4, 8 ] }\n'
    'parameters: { key: "onnx_path" value: { string_value: "/m.onnx" } }\n'
    'parameters: { key: "site_packages" value: { string_value: "/sp" } }\n'
    'parameters: { key: "intra_op_threads" value: { string_value: "2" } }\n')
# ...plus the GPU the spec's hardware names (gpu = gpu:0), which the hand-made one lacked.
OLD_IMAGE_GPU_TENSORRT = (
    TENSORS + 'backend: "onnxruntime"\n'
    'instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0 ] } ]\n'
    'dynamic_batching { max_queue_delay_microseconds: 0 }\n'
    'parameters: { key: "intra_op_thread_count" value: { string_value: "2" } }\n'
    'optimization { execution_accelerators { gpu_execution_accelerator: '
    '[ { name: "tensorrt" } ] } }\n')
OLD_IMAGE_CPU = (
    TENSORS + 'backend: "onnxruntime"\n'
    'instance_group [ { count: 1 kind: KIND_CPU } ]\n'
    'parameters: { key: "intra_op_thread_count" value: { string_value: "2" } }\n')


def _ctx(**server) -> ServeContext:
    return ServeContext(model_name="cnn", model_path=Path("/m.onnx"),
                        inputs=single_input((3, 8, 8)),
                        num_outputs=10, workdir=Path("/w"), http_port=1, grpc_port=2,
                        metrics_port=3, max_batch_size=8, threads=2,
                        server=ServerConfig(**server))


def _parse(text: str):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize(("new", "old"), [
    (lambda: model_config(_ctx(), Path('/runs/a "q"\\b/model.onnx'),
                          ["/v/site-packages", "/v/lib64"]), OLD_PYTHON_BACKEND),
    (lambda: model_config(_ctx(dynamic_batching=True, max_queue_delay_us=500,
                               preferred_batch_sizes=(4, 8), instance_count=2),
                          Path("/m.onnx"), ["/sp"]), OLD_PYTHON_BACKEND_BATCHING),
    (lambda: image_model_config(_ctx(dynamic_batching=True, instance_count=2), gpu=True,
                                accelerator="tensorrt"), OLD_IMAGE_GPU_TENSORRT),
    (lambda: image_model_config(_ctx(), gpu=False), OLD_IMAGE_CPU),
], ids=["python", "python-batching", "image-gpu-tensorrt", "image-cpu"])
def test_same_message_as_the_hand_written_text(new, old):
    assert _parse(new()) == _parse(old)


def test_the_gpu_instances_go_on_the_gpu_the_hardware_names():
    ctx = _ctx()
    on_gpu_1 = ServeContext(**{**ctx.__dict__, "device": "gpu:1"})
    (group,) = _parse(image_model_config(on_gpu_1, gpu=True)).instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU and list(group.gpus) == [1]


def test_batcher_on_with_default_knobs_is_still_present():
    # dynamic_batching's presence is what turns Triton's batcher on, zero delay or not.
    config = _parse(image_model_config(_ctx(dynamic_batching=True), gpu=False))
    assert config.HasField("dynamic_batching")
    assert not _parse(image_model_config(_ctx(), gpu=False)).HasField("dynamic_batching")


def test_scheduling_sets_instances_and_batcher():
    config = model_config_pb2.ModelConfig()
    scheduling(config, _ctx(dynamic_batching=True, max_queue_delay_us=100,
                            preferred_batch_sizes=(2,), instance_count=3), "KIND_GPU")
    (group,) = config.instance_group
    assert (group.count, group.kind) == (3, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert list(config.dynamic_batching.preferred_batch_size) == [2]


def test_tensorrt_without_a_gpu_is_refused():
    with pytest.raises(InferBenchError, match="needs a GPU"):
        image_model_config(_ctx(), gpu=False, accelerator="tensorrt")


def test_importing_the_backend_does_not_import_tritonclient():
    # tritonclient's gRPC package takes ~0.2 s to import; only writing a repository needs it.
    code = ("import sys, inferbench.backends.triton; "
            "print(any(m.startswith('tritonclient') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
