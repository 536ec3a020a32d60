"""TensorFlow-Serving-style REST: POST /v1/models/<model>:predict {"instances": [...]}.

The request format of TF Serving's REST API, also spoken by other servers (KServe's v1
protocol). This client is verified against servers speaking the format; TF Serving itself
only runs from its Docker image (see DESIGN.md).
"""

from __future__ import annotations

import json

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.load.protocols.base import Batch, Protocol, Target, inputs_of, require_ok
from inferbench.load.runner import Request

# The output of a single-output signature, as inferbench/models/tf_port.py names it.
SINGLE_OUTPUT_NAME = "output"


class TfServingRest(Protocol):
    name = "tfserving-rest"

    def build(self, target: Target, batch: Batch) -> Request:
        """The row format: one instance per sample; with several inputs each instance is an
        object keyed by input name (a lone input is sent as its bare values, as TF
        Serving's clients do)."""
        url = f"{target.url.rstrip('/')}/v1/models/{target.model}:predict"
        inputs = inputs_of(target, batch)
        if len(inputs) == 1:
            instances = next(iter(inputs.values())).tolist()
        else:
            columns = {name: array.tolist() for name, array in inputs.items()}
            instances = [dict(zip(columns, row, strict=True))
                         for row in zip(*columns.values(), strict=True)]
        body = json.dumps({"instances": instances}, separators=(",", ":")).encode()
        return Request(url, body, {"Content-Type": "application/json", **target.extra_headers})

    def _predictions(self, body: bytes) -> list:
        try:
            predictions = json.loads(body)["predictions"]
        except (ValueError, KeyError, TypeError):
            raise InferBenchError(f"not a TF-Serving predict answer: {body[:200]!r}") from None
        if not isinstance(predictions, list):
            raise InferBenchError(f"TF-Serving predictions are not a list: {body[:200]!r}")
        return predictions

    def decode(self, headers: dict[str, str], body: bytes) -> dict[str, np.ndarray]:
        """The row format's answer by output name. With several outputs each prediction is
        an object keyed by output name; with one output TF Serving drops the name, and the
        values are returned under SINGLE_OUTPUT_NAME, the name InferBench's SavedModel
        export gives its one output. Values come back as float32 (JSON has no dtype; every
        canonical model answers float32)."""
        predictions = self._predictions(body)
        try:
            if predictions and all(isinstance(p, dict) for p in predictions):
                return {name: np.asarray([p[name] for p in predictions], dtype=np.float32)
                        for name in predictions[0]}
            return {SINGLE_OUTPUT_NAME: np.asarray(predictions, dtype=np.float32)}
        except (KeyError, ValueError, TypeError) as exc:
            raise InferBenchError(f"TF-Serving predictions are not tensors ({exc}): "
                                  f"{body[:200]!r}") from None

    def check(self, status: int, headers: dict[str, str], body: bytes, batch_size: int) -> None:
        require_ok(status, body, "TF-Serving predict")
        predictions = self._predictions(body)
        if len(predictions) != batch_size:
            raise InferBenchError(f"TF-Serving predict answered {len(predictions)} predictions "
                                  f"for a batch of {batch_size}")
