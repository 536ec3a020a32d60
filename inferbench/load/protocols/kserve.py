"""KServe / Triton V2 over HTTP: the binary tensor extension, and plain JSON."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.load import v2protocol
from inferbench.load.protocols.base import (
    Batch,
    Protocol,
    Target,
    check_batch_outputs,
    inputs_of,
    require_ok,
)
from inferbench.load.runner import Request


def infer_url(target: Target) -> str:
    return f"{target.url.rstrip('/')}/v2/models/{target.model}/infer"


class KServeV2Binary(Protocol):
    """Tensors as raw bytes after a JSON header (Inference-Header-Content-Length)."""

    name = "kserve-v2"

    def build(self, target: Target, batch: Batch) -> Request:
        body, headers = v2protocol.encode_request(inputs_of(target, batch), target.output_name)
        return Request(infer_url(target), body, {**headers, **target.extra_headers})

    def model_metadata(self, url: str, model: str) -> dict[str, Any]:
        meta_url = f"{url.rstrip('/')}/v2/models/{model}"
        try:
            with urllib.request.urlopen(meta_url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise InferBenchError(f"model {model!r}: {meta_url} answered HTTP {exc.code}; "
                                  "fix: check --model") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise InferBenchError(f"--endpoint {url!r}: no model metadata at {meta_url} "
                                  f"({exc}); fix: start the server, or give --input-name and "
                                  "--input-shape") from None

    def decode(self, headers: dict[str, str], body: bytes) -> dict[str, np.ndarray]:
        try:
            return v2protocol.decode_response(body, headers.get(v2protocol.HEADER_LENGTH.lower()))
        except (ValueError, KeyError) as exc:
            raise InferBenchError(f"not a KServe V2 infer response ({exc}): {body[:200]!r}") \
                from None

    def check(self, status: int, headers: dict[str, str], body: bytes, batch_size: int) -> None:
        require_ok(status, body, "KServe V2 infer")
        check_batch_outputs(self.decode(headers, body), batch_size)


class KServeV2Json(KServeV2Binary):
    """Tensors as JSON lists (servers without the binary extension, e.g. MLServer's default)."""

    name = "kserve-v2-json"

    def build(self, target: Target, batch: Batch) -> Request:
        entries = [{"name": name, "shape": list(array.shape),
                    "datatype": v2protocol.datatype_of(name, array),
                    "data": array.ravel().tolist()}
                   for name, array in inputs_of(target, batch).items()]
        header = {"inputs": entries, "outputs": [{"name": target.output_name}]}
        return Request(infer_url(target), json.dumps(header, separators=(",", ":")).encode(),
                       {"Content-Type": "application/json", **target.extra_headers})
