"""Generic HTTP: a JSON body or raw bytes POSTed to a full URL (FastAPI apps, TorchServe)."""

from __future__ import annotations

import json

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.load.protocols.base import Batch, Protocol, Target, require_ok, single_tensor
from inferbench.load.runner import Request


class HttpJson(Protocol):
    """POST {"inputs": <nested lists>} to the URL as given; any 200 JSON answer is good."""

    name = "http-json"
    needs_model = False

    def build(self, target: Target, batch: Batch) -> Request:
        tensor = single_tensor(self.name, target, batch)
        body = json.dumps({"inputs": tensor.tolist()}, separators=(",", ":")).encode()
        return Request(target.url, body, {"Content-Type": "application/json",
                                          **target.extra_headers})

    def check(self, status: int, headers: dict[str, str], body: bytes, batch_size: int) -> None:
        require_ok(status, body, "the endpoint")
        try:
            json.loads(body)
        except ValueError:
            raise InferBenchError(f"the endpoint answered non-JSON {body[:200]!r}; fix: use "
                                  "--protocol http-raw for a binary answer") from None


class HttpRaw(Protocol):
    """POST the batch's raw bytes (application/octet-stream); any 200 answer is good."""

    name = "http-raw"
    needs_model = False

    def build(self, target: Target, batch: Batch) -> Request:
        tensor = single_tensor(self.name, target, batch)
        return Request(target.url, np.ascontiguousarray(tensor).tobytes(),
                       {"Content-Type": "application/octet-stream", **target.extra_headers})

    def check(self, status: int, headers: dict[str, str], body: bytes, batch_size: int) -> None:
        require_ok(status, body, "the endpoint")
