"""TensorFlow-Serving-style REST: POST /v1/models/<model>:predict {"instances": [...]}.

The request format of TF Serving's REST API, also spoken by other servers (KServe's v1
protocol). This client is verified against servers speaking the format; TF Serving itself
only runs from its Docker image (see DESIGN.md).
"""

from __future__ import annotations

import json

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.load.protocols.base import Protocol, Target, require_ok
from inferbench.load.runner import Request


class TfServingRest(Protocol):
    name = "tfserving-rest"

    def build(self, target: Target, batch: np.ndarray) -> Request:
        url = f"{target.url.rstrip('/')}/v1/models/{target.model}:predict"
        body = json.dumps({"instances": batch.tolist()}, separators=(",", ":")).encode()
        return Request(url, body, {"Content-Type": "application/json", **target.extra_headers})

    def check(self, status: int, headers: dict[str, str], body: bytes, batch_size: int) -> None:
        require_ok(status, body, "TF-Serving predict")
        try:
            predictions = json.loads(body)["predictions"]
        except (ValueError, KeyError, TypeError):
            raise InferBenchError(f"not a TF-Serving predict answer: {body[:200]!r}") from None
        if len(predictions) != batch_size:
            raise InferBenchError(f"TF-Serving predict answered {len(predictions)} predictions "
                                  f"for a batch of {batch_size}")
