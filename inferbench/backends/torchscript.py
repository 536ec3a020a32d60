"""TorchScript (the convert stage's torch.jit.trace file) behind the project's own FastAPI
server: PyTorch's own runtime, served like ONNX Runtime so the two compare on equal terms."""

from __future__ import annotations

from inferbench.backends.fastapi_runtime import FastApiRuntimeBackend
from inferbench.platforms import DeviceKind, ModelFormat, PlatformDescriptor, Transport


class TorchScriptBackend(FastApiRuntimeBackend):
    name = "torchscript"
    descriptor = PlatformDescriptor(
        model_format=ModelFormat.TORCHSCRIPT,
        protocols={Transport.HTTP: "kserve-v2"},
        startup_s=4.0,
        free_sequence=True,  # any sequence length the exported model takes
        server_processing=True,  # the FastAPI server's --preprocess / --postprocess
        # servers/runtimes.py; the project installs torch's CPU wheel, a GPU worker a CUDA
        # build. The GPU path is not verified here (no GPU on these hosts).
        devices={DeviceKind.CPU: "PyTorch on the CPU",
                 DeviceKind.GPU: "PyTorch on cuda:<index> (a CUDA build of torch)"},
    )
    runtime = "torchscript"
    runtime_distribution = "torch"
