"""Serving platforms, one module each, registered by name; each backend class carries its
platform's descriptor, looked up here."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

from inferbench.backends.base import Backend
from inferbench.errors import InferBenchError
from inferbench.platforms import Platform, PlatformDescriptor


@functools.cache
def backend_classes() -> Mapping[str, type[Backend]]:
    """Every backend class by platform name (the values of `inferbench.platforms.Platform`;
    tests/test_platforms.py holds the two lists equal)."""
    # Imported on first use, not at module top: this package runs whenever any of its
    # modules is imported (base, process), and those must not pull in every platform. The
    # backend modules import no platform library at their top (tests/test_platforms.py
    # checks it), so listing them stays cheap.
    from inferbench.backends.mlserver import MLServerBackend
    from inferbench.backends.onnxruntime import OnnxRuntimeBackend
    from inferbench.backends.openvino import OpenVinoBackend
    from inferbench.backends.tfserving import TfServingBackend
    from inferbench.backends.torchscript import TorchScriptBackend
    from inferbench.backends.torchserve import TorchServeBackend
    from inferbench.backends.triton import TritonBackend

    return MappingProxyType({cls.name: cls for cls in (
        TritonBackend, OnnxRuntimeBackend, TorchScriptBackend, OpenVinoBackend,
        TorchServeBackend, MLServerBackend, TfServingBackend)})


def get_backend(name: str) -> Backend:
    registry = backend_classes()
    try:
        return registry[name]()
    except KeyError:
        raise InferBenchError(
            f"unknown serving platform {name!r}; known platforms: {', '.join(sorted(registry))}; "
            "fix: use one of those") from None


@functools.cache
def descriptors() -> Mapping[Platform, PlatformDescriptor]:
    """Every platform's descriptor, from its backend class, in registry order."""
    return MappingProxyType({Platform(name): cls.descriptor
                             for name, cls in backend_classes().items()})


def descriptor(platform: Platform | str) -> PlatformDescriptor:
    """The descriptor of one platform (a Platform or its name)."""
    known = descriptors()
    try:
        return known[Platform(platform)]
    except (ValueError, KeyError):
        raise InferBenchError(
            f"unknown serving platform {platform!r}; known platforms: "
            f"{', '.join(p.value for p in known)}; fix: use one of those") from None
