"""Model runtimes the project's FastAPI server can put behind KServe V2: ONNX Runtime,
TorchScript and OpenVINO. Each loads one model instance and runs a batch; the server, its
batcher and the protocol are the same for all, so they compare on equal terms.

Heavy imports (onnxruntime, torch, openvino) happen only in the loader of the runtime asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inferbench.errors import InferBenchError


@dataclass
class ModelRuntime:
    """One loaded model instance."""

    platform: str  # reported in the model metadata, e.g. "onnxruntime"
    version: str
    inputs: list[tuple[str, list[int]]]  # name and shape (-1 for a free dimension)
    output_names: list[str]
    run: Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]]


def load_onnxruntime(model_path: str, threads: int, input_shape: Sequence[int] | None
                     ) -> ModelRuntime:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    return ModelRuntime(
        platform="onnxruntime", version=ort.__version__,
        inputs=[(i.name, [d if isinstance(d, int) else -1 for d in i.shape])
                for i in session.get_inputs()],
        output_names=output_names,
        run=lambda feeds: session.run(output_names, feeds))


# A TorchScript module has no tensor names: the server uses the names every backend uses.
TORCHSCRIPT_INPUT, TORCHSCRIPT_OUTPUT = "input", "output"


def load_torchscript(model_path: str, threads: int, input_shape: Sequence[int] | None
                     ) -> ModelRuntime:
    import torch

    if not input_shape:
        raise InferBenchError("the torchscript runtime needs --input-shape (one sample's "
                              "shape, e.g. 3,32,32): a TorchScript file does not record it")
    torch.set_num_threads(threads)
    module = torch.jit.load(model_path, map_location="cpu").eval()

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(torch.from_numpy(feeds[TORCHSCRIPT_INPUT]))
        return [out.numpy()]

    return ModelRuntime(platform="torchscript", version=torch.__version__,
                        inputs=[(TORCHSCRIPT_INPUT, [-1, *input_shape])],
                        output_names=[TORCHSCRIPT_OUTPUT], run=run)


def load_openvino(model_path: str, threads: int, input_shape: Sequence[int] | None,
                  precision: str = "f32") -> ModelRuntime:
    """OpenVINO's CPU plugin on the ONNX file. f32 inference precision unless asked: on CPUs
    with AMX or AVX-512 BF16 the plugin defaults to bf16, whose outputs differ from the other
    platforms' beyond the conversion tolerance. bf16 is the explicit, faster option."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model_path), "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1})
    request = compiled.create_infer_request()  # one instance: one request at a time
    outputs = list(compiled.outputs)

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = request.infer(feeds)
        return [np.asarray(results[o]) for o in outputs]

    def shape(port) -> list[int]:
        return [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]

    return ModelRuntime(platform="openvino", version=f"{ov.__version__} ({precision})",
                        inputs=[(i.get_any_name(), shape(i)) for i in compiled.inputs],
                        output_names=[o.get_any_name() for o in outputs], run=run)


RUNTIMES: dict[str, Callable[[str, int, Sequence[int] | None], ModelRuntime]] = {
    "onnxruntime": load_onnxruntime, "torchscript": load_torchscript,
    "openvino": load_openvino}


def load_instances(runtime: str, model_path: str, threads: int, instances: int,
                   input_shape: Sequence[int] | None = None, precision: str = "f32"
                   ) -> list[ModelRuntime]:
    """`instances` independent copies of the model (as Triton loads one per instance)."""
    try:
        loader = RUNTIMES[runtime]
    except KeyError:
        raise InferBenchError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}") \
            from None
    if precision != "f32" and runtime != "openvino":
        raise InferBenchError(f"precision {precision!r} is an OpenVINO option; runtime "
                              f"{runtime!r} runs f32 only")
    if runtime == "openvino":
        return [load_openvino(model_path, threads, input_shape, precision)
                for _ in range(instances)]
    return [loader(model_path, threads, input_shape) for _ in range(instances)]
