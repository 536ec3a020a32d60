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
        # servers/runtimes.py loads the module with map_location="cpu"; the project installs
        # torch's CPU wheel.
        devices={DeviceKind.CPU: "PyTorch on the CPU"},
    )
    runtime = "torchscript"
    runtime_distribution = "torch"
