"""Protocol clients of the load generator, one small interface (see base.Protocol).

`PROTOCOLS` is the registry: every client's name, where its class lives, what it speaks and
what `--endpoint` is for it. The CLI's help and the platform descriptors' checks read it, so
this module imports no client (they need numpy, and gRPC for some): a client's module is
imported when its protocol is asked for. `Protocol` and `Target` are importable from here
as before; they are loaded on first access too.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inferbench.errors import InferBenchError

if TYPE_CHECKING:
    from inferbench.load.protocols.base import Protocol, Target

# What --endpoint is, per client.
BASE_URL = "http://HOST:PORT"
GRPC_URL = "grpc://HOST:PORT"
FULL_URL = "the full URL"


@dataclass(frozen=True)
class ProtocolEntry:
    """One client: its class (`module`.`cls` under this package), a short description for
    help texts, and the endpoint form it takes. Clients given the full URL do not name a
    model (Protocol.needs_model is False); the others do."""

    module: str
    cls: str
    summary: str
    endpoint: str  # BASE_URL, GRPC_URL or FULL_URL


PROTOCOLS: dict[str, ProtocolEntry] = {
    "kserve-v2": ProtocolEntry("kserve", "KServeV2Binary",
                               "KServe V2 REST, binary tensor extension", BASE_URL),
    "kserve-v2-json": ProtocolEntry("kserve", "KServeV2Json",
                                    "KServe V2 REST, JSON tensors", BASE_URL),
    "kserve-v2-grpc": ProtocolEntry("kserve_grpc", "KServeV2Grpc",
                                    "KServe V2 GRPCInferenceService", GRPC_URL),
    "http-json": ProtocolEntry("generic", "HttpJson", "a JSON body POSTed to a URL", FULL_URL),
    "http-raw": ProtocolEntry("generic", "HttpRaw", "raw bytes POSTed to a URL", FULL_URL),
    "tfserving-rest": ProtocolEntry("tfserving", "TfServingRest",
                                    "TF Serving REST predict API", BASE_URL),
    "tfserving-grpc": ProtocolEntry("tfserving_grpc", "TfServingGrpc",
                                    "TF Serving gRPC PredictionService", GRPC_URL),
    "torchserve": ProtocolEntry("torchserve", "TorchServeRaw",
                                "TorchServe inference API, raw float32 tensors", BASE_URL),
}


def _entry(name: str) -> ProtocolEntry:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise InferBenchError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}; "
                              "fix: use one of those") from None


def protocol_class(name: str) -> type[Protocol]:
    """The client class registered under `name` (imports its module)."""
    entry = _entry(name)
    module = importlib.import_module(f"{__name__}.{entry.module}")
    return getattr(module, entry.cls)


def get_protocol(name: str) -> Protocol:
    return protocol_class(name)()


def __getattr__(name: str) -> Any:
    # Lazy re-exports (PEP 562): importing the registry must not import numpy.
    if name in ("Protocol", "Target"):
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PROTOCOLS", "Protocol", "ProtocolEntry", "Target", "get_protocol",
           "protocol_class"]
