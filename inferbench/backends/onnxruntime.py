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
        free_sequence=True,  # any sequence length the exported model takes
        server_processing=True,  # the FastAPI server's --preprocess / --postprocess
        # servers/runtimes.py; the GPU path is not verified here (no GPU on these hosts).
        devices={DeviceKind.CPU: "ONNX Runtime's CPU execution provider",
                 DeviceKind.GPU: "ONNX Runtime's CUDA execution provider (onnxruntime-gpu "
                                 "installed in place of onnxruntime)"},
    )
    runtime = "onnxruntime"
    runtime_distribution = "onnxruntime"
