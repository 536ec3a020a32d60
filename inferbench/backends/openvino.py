"""OpenVINO (its CPU plugin, f32 inference precision) on the ONNX model, behind the
project's own FastAPI server. This is OpenVINO's runtime, not OpenVINO Model Server (a
separate C++ server that is not packaged on PyPI): the server, batcher and protocol are the
same as for onnxruntime and torchscript, so the runtimes compare on equal terms."""

from __future__ import annotations

from inferbench.backends.fastapi_runtime import FastApiRuntimeBackend
from inferbench.platforms import DeviceKind, ModelFormat, PlatformDescriptor, Transport


class OpenVinoBackend(FastApiRuntimeBackend):
    name = "openvino"
    descriptor = PlatformDescriptor(
        model_format=ModelFormat.ONNX,
        protocols={Transport.HTTP: "kserve-v2"},
        startup_s=4.0,
        free_sequence=True,  # any sequence length the exported model takes
        server_processing=True,  # the FastAPI server's --preprocess / --postprocess
        # servers/runtimes.py compiles for OpenVINO's "CPU" device only.
        devices={DeviceKind.CPU: "OpenVINO's CPU plugin (f32 unless server.openvino_precision)"},
    )
    runtime = "openvino"
    runtime_distribution = "openvino"
