"""ONNX Runtime behind the project's own FastAPI server."""

from __future__ import annotations

from inferbench.backends.fastapi_runtime import FastApiRuntimeBackend
from inferbench.platforms import DeviceKind, ModelFormat, PlatformDescriptor, Transport


class OnnxRuntimeBackend(FastApiRuntimeBackend):
    name = "onnxruntime"
    descriptor = PlatformDescriptor(
        model_format=ModelFormat.ONNX,
        protocols={Transport.HTTP: "kserve-v2"},
        startup_s=3.0,
        # servers/runtimes.py asks ONNX Runtime for its CPUExecutionProvider only.
        devices={DeviceKind.CPU: "ONNX Runtime's CPU execution provider"},
    )
    runtime = "onnxruntime"
    runtime_distribution = "onnxruntime"
