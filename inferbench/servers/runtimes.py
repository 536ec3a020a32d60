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
from inferbench.load.v2protocol import DATATYPE_NAMES
from inferbench.models.signature import TensorSpec
from inferbench.platforms import gpu_index


@dataclass
class ModelRuntime:
    """One loaded model instance."""

    platform: str  # reported in the model metadata, e.g. "onnxruntime"
    version: str
    device: str  # where it really runs the model: "cpu" or "gpu:<index>" (the metadata says)
    inputs: list[tuple[str, str, list[int]]]  # name, V2 datatype, shape (-1: a free dimension)
    output_names: list[str]
    run: Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]]
    accelerator: str | None = None  # the GPU library running it, where one is named


# ONNX Runtime's GPU execution providers, in the order they are asked for: TensorRT's where
# the installed build has it (it compiles engines for the graph; nodes it cannot take fall
# to CUDA's), then CUDA's. The CPU provider comes last for the nodes neither has.
ORT_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


# ONNX Runtime's names of the element types the benchmark sends, as V2 datatypes.
ORT_DATATYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64",
                 "tensor(int32)": "INT32"}


def load_onnxruntime(model_path: str, threads: int, inputs: Sequence[TensorSpec] | None,
                     device: str = "cpu") -> ModelRuntime:
    """ONNX Runtime with its CPU execution provider, or on a GPU its TensorRT one where the
    build has it, else its CUDA one. ONNX Runtime falls back to the CPU when the GPU cannot
    be used (a CPU build, no driver): that is refused here, since the results would be
    labelled with a GPU the model never ran on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    index = gpu_index(device)
    providers: list = ["CPUExecutionProvider"]
    if index is not None:
        available = ort.get_available_providers()
        asked = [p for p in ORT_GPU_PROVIDERS if p in available] or ["CUDAExecutionProvider"]
        providers[:0] = [(p, {"device_id": index}) for p in asked]
    session = ort.InferenceSession(model_path, options, providers=providers)
    active = session.get_providers()
    if index is not None and active[0] not in ORT_GPU_PROVIDERS:
        raise InferBenchError(
            f"ONNX Runtime was asked to run on {device} but runs on {active!r} (available "
            f"here: {ort.get_available_providers()!r}); fix: install onnxruntime-gpu in place "
            "of onnxruntime on the GPU worker, or set hardware to \"cpu\"")
    output_names = [o.name for o in session.get_outputs()]
    return ModelRuntime(
        platform="onnxruntime", version=ort.__version__, device=device,
        accelerator=active[0].removesuffix("ExecutionProvider") if index is not None else None,
        inputs=[(i.name, ORT_DATATYPES.get(i.type, i.type),
                 [d if isinstance(d, int) else -1 for d in i.shape])
                for i in session.get_inputs()],
        output_names=output_names,
        run=lambda feeds: session.run(output_names, feeds))


# A TorchScript module has no tensor names: its inputs are named by the signature it is
# given (positional, in that order) and its output by the name every backend uses.
TORCHSCRIPT_OUTPUT = "output"


def torch_device(device: str):
    """The torch.device of "cpu" or "gpu[:<index>]"; a GPU this torch cannot use is refused
    with the fix (a CPU build would otherwise run the model on the CPU under a GPU label)."""
    import torch

    index = gpu_index(device)
    if index is None:
        return torch.device("cpu")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= visible:
        raise InferBenchError(
            f"PyTorch was asked to run on {device}, but this torch {torch.__version__} sees "
            f"{visible} CUDA device(s) (built for CUDA: {torch.version.cuda or 'no'}); fix: "
            "install a CUDA build of torch on the GPU worker, or set hardware to \"cpu\"")
    return torch.device(f"cuda:{index}")


def load_torchscript(model_path: str, threads: int, inputs: Sequence[TensorSpec] | None,
                     device: str = "cpu") -> ModelRuntime:
    """PyTorch's own runtime on the CPU, or on a GPU as `cuda:<index>`; the inputs are
    passed positionally in the signature's order (the order they were traced in)."""
    import torch

    if not inputs:
        raise InferBenchError("the torchscript runtime needs --inputs (e.g. "
                              "input:float32:3,32,32) or --input-shape: a TorchScript file "
                              "does not record its inputs")
    where = torch_device(device)
    torch.set_num_threads(threads)
    module = torch.jit.load(model_path, map_location=where).eval()
    names = [t.name for t in inputs]

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(*(torch.from_numpy(feeds[n]).to(where) for n in names))
        return [out.cpu().numpy()]

    return ModelRuntime(platform="torchscript", version=torch.__version__, device=device,
                        inputs=[(t.name, t.datatype, [-1, *t.shape])
                                for t in inputs],
                        output_names=[TORCHSCRIPT_OUTPUT], run=run)


def load_openvino(model_path: str, threads: int, inputs: Sequence[TensorSpec] | None,
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
                        device="cpu",
                        inputs=[(i.get_any_name(),
                                 DATATYPE_NAMES[np.dtype(i.get_element_type().to_dtype())],
                                 shape(i)) for i in compiled.inputs],
                        output_names=[o.get_any_name() for o in outputs], run=run)


RUNTIMES: dict[str, Callable[..., ModelRuntime]] = {
    "onnxruntime": load_onnxruntime, "torchscript": load_torchscript,
    "openvino": load_openvino}


def load_instances(runtime: str, model_path: str, threads: int, instances: int,
                   inputs: Sequence[TensorSpec] | None = None, precision: str = "f32",
                   device: str = "cpu") -> list[ModelRuntime]:
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
        if device != "cpu":
            raise InferBenchError(f"OpenVINO runs on the CPU here, not {device}; fix: set "
                                  'hardware to "cpu" for the openvino platform')
        return [load_openvino(model_path, threads, inputs, precision)
                for _ in range(instances)]
    return [loader(model_path, threads, inputs, device) for _ in range(instances)]
