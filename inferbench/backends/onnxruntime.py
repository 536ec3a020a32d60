"""ONNX Runtime behind the project's own FastAPI server."""

from __future__ import annotations

from inferbench.backends.fastapi_runtime import FastApiRuntimeBackend
from inferbench.spec import ModelFormat


class OnnxRuntimeBackend(FastApiRuntimeBackend):
    name = "onnxruntime"
    model_format = ModelFormat.ONNX
    runtime = "onnxruntime"
    runtime_distribution = "onnxruntime"
