"""Protocol clients of the load generator, one small interface (see base.Protocol)."""

from __future__ import annotations

from inferbench.errors import InferBenchError
from inferbench.load.protocols.base import Protocol, Target
from inferbench.load.protocols.generic import HttpJson, HttpRaw
from inferbench.load.protocols.kserve import KServeV2Binary, KServeV2Json
from inferbench.load.protocols.kserve_grpc import KServeV2Grpc
from inferbench.load.protocols.tfserving import TfServingRest
from inferbench.load.protocols.tfserving_grpc import TfServingGrpc
from inferbench.load.protocols.torchserve import TorchServeRaw

PROTOCOLS: dict[str, type[Protocol]] = {
    cls.name: cls for cls in (KServeV2Binary, KServeV2Json, KServeV2Grpc, HttpJson, HttpRaw,
                               TfServingRest, TfServingGrpc, TorchServeRaw)
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]()
    except KeyError:
        raise InferBenchError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}") \
            from None


__all__ = ["PROTOCOLS", "Protocol", "Target", "get_protocol"]
