"""Serving platforms, one module each, registered by name."""

from __future__ import annotations

from inferbench.backends.base import Backend
from inferbench.errors import InferBenchError


def _registry() -> dict[str, type[Backend]]:
    # Imported here so listing platforms never imports a platform's heavy dependencies.
    from inferbench.backends.mlserver import MLServerBackend
    from inferbench.backends.onnxruntime import OnnxRuntimeBackend
    from inferbench.backends.openvino import OpenVinoBackend
    from inferbench.backends.tfserving import TfServingBackend
    from inferbench.backends.torchscript import TorchScriptBackend
    from inferbench.backends.torchserve import TorchServeBackend
    from inferbench.backends.triton import TritonBackend

    return {cls.name: cls for cls in (TritonBackend, OnnxRuntimeBackend, TorchScriptBackend,
                                          OpenVinoBackend, TorchServeBackend, MLServerBackend,
                                          TfServingBackend)}


def get_backend(name: str) -> Backend:
    registry = _registry()
    try:
        return registry[name]()
    except KeyError:
        raise InferBenchError(
            f"unknown serving platform {name!r}; known platforms: {', '.join(sorted(registry))}"
        ) from None
