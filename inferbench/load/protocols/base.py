"""The one small client interface every protocol implements.

A protocol turns a batch (its input tensors by name; a lone array is the single input the
target names) into the bytes of one request, and checks a response. Requests are built
once, before a run (the issuer only writes prepared bytes), so a protocol's cost never shows
up as late sends. A backend that speaks something new brings a subclass and registers it in
`inferbench.load.protocols.PROTOCOLS`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.load.runner import Request
from inferbench.models.signature import as_inputs, batch_size_of

# One request's inputs: by name, or a lone array for a single-input model.
Batch = np.ndarray | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Target:
    """Where requests go: a base URL (scheme://host:port, or the full URL for generic
    HTTP), a model name, and the tensor names for protocols that name them (input_name:
    the one input of a batch given as a lone array)."""

    url: str
    model: str = ""
    input_name: str = "INPUT0"
    output_name: str = "OUTPUT0"
    extra_headers: dict[str, str] = field(default_factory=dict)


class Protocol(ABC):
    """Build request bytes for a batch; check a response."""

    name: str = ""
    needs_model: bool = True  # the request names the model (False: the URL is the endpoint)

    @abstractmethod
    def build(self, target: Target, batch: Batch) -> Request:
        """The request carrying `batch` (every input's first dimension = batch size)."""

    @abstractmethod
    def check(self, status: int, headers: dict[str, str], body: bytes, batch_size: int) -> None:
        """Raise InferBenchError, naming what is wrong, unless this is a good answer."""

    def model_metadata(self, url: str, model: str) -> dict[str, Any]:
        """The model's inputs and outputs as KServe V2 metadata JSON (name, datatype, shape),
        for protocols that can ask the server; others need them given."""
        raise InferBenchError(f"protocol {self.name!r} cannot ask the server for the model's "
                              "inputs; fix: give --input-name, --output-name and "
                              "--input-shape")

    def decode(self, headers: dict[str, str], body: bytes) -> dict[str, np.ndarray]:
        """The output tensors of a good answer, by name (the pre-run check compares their
        shapes, the conformance suite their values)."""
        raise InferBenchError(f"protocol {self.name!r} answers are not tensors this client "
                              "can decode")

    def send_once(self, request: Request, timeout_s: float = 30.0
                  ) -> tuple[int, dict[str, str], bytes]:
        """Send one prepared request now, outside any timed run: status, headers (lower-case
        names) and body. Errors that mean the endpoint is not there name the fix."""
        req = urllib.request.Request(request.url, data=request.body, headers=request.headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as response:
                status, headers, body = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, dict(exc.headers), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise InferBenchError(f"endpoint {request.url!r} is not reachable ({exc}); fix: "
                                  "start the server or correct --endpoint") from None
        return status, {k.lower(): v for k, v in headers.items()}, body

    def probe(self, target: Target, batch: Batch) -> None:
        """Send one request now (outside the timed run) and check its answer: a misconfigured
        endpoint fails here with a clear message instead of as 100 % errors."""
        status, headers, body = self.send_once(self.build(target, batch))
        self.check(status, headers, body, batch_size_of(inputs_of(target, batch)))


def inputs_of(target: Target, batch: Batch) -> dict[str, np.ndarray]:
    """A request's input tensors by name (a lone array is the target's input_name); inputs
    that disagree on the batch size are refused here, before anything is sent."""
    inputs = as_inputs(batch, target.input_name)
    batch_size_of(inputs)
    return inputs


def single_tensor(protocol: str, target: Target, batch: Batch) -> np.ndarray:
    """The one tensor of a protocol that carries a single unnamed tensor."""
    inputs = inputs_of(target, batch)
    if len(inputs) != 1:
        raise InferBenchError(f"the {protocol} protocol sends one unnamed tensor, and the "
                              f"model takes {len(inputs)} ({', '.join(inputs)}); fix: use a "
                              "protocol that names its inputs (kserve-v2, kserve-v2-grpc, "
                              "tfserving-rest, tfserving-grpc, torchserve)")
    return next(iter(inputs.values()))


def check_batch_outputs(outputs: dict[str, np.ndarray], batch_size: int,
                        who: str = "the server") -> None:
    """Every output tensor of a good answer has the batch as its first dimension."""
    if not outputs or any(v.shape[:1] != (batch_size,) for v in outputs.values()):
        shapes = {k: v.shape for k, v in outputs.items()}
        raise InferBenchError(f"{who} answered outputs {shapes}, expected a first dimension "
                              f"of {batch_size} (the batch size)")


def require_ok(status: int, body: bytes, what: str) -> None:
    if status != 200:
        raise InferBenchError(f"{what} answered HTTP {status}: {body[:300]!r}; fix: check "
                              "--protocol, --model and the input shape")
