"""TorchScript (the convert stage's torch.jit.trace file) behind the project's own FastAPI
server: PyTorch's own runtime, served like ONNX Runtime so the two compare on equal terms."""

from __future__ import annotations

from inferbench.backends.fastapi_runtime import FastApiRuntimeBackend
from inferbench.spec import ModelFormat


class TorchScriptBackend(FastApiRuntimeBackend):
    name = "torchscript"
    model_format = ModelFormat.TORCHSCRIPT
    runtime = "torchscript"
    runtime_distribution = "torch"
