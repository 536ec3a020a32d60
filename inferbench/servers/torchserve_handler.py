"""TorchServe handler that serves a TorchScript model on raw float32 tensors.

Packed into the model archive (.mar) by the torchserve backend and run by TorchServe's
Python worker (`ts.model_service_worker`), so it imports only torch, numpy and the
standard library, never `inferbench`. Its settings come from `inferbench.json`, an extra
file of the archive: the sample shape (without the batch dimension) and the intra-op
thread budget every platform gets.

Wire format (the `torchserve` protocol of the load generator): the request body is the
C-order float32 bytes of a batch of samples, the answer the float32 bytes of its outputs,
with the answer's shape in the `X-Output-Shape` header (comma-separated). With
TorchServe's batching on, the frontend hands several requests over at once: they run as
one concatenated batch, and the output is split back by each request's rows.
"""

from __future__ import annotations

import json
import os
from typing import Any

SETTINGS_FILE = "inferbench.json"
SHAPE_HEADER = "X-Output-Shape"


class RawTensorHandler:
    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context: Any) -> None:
        import numpy as np
        import torch

        model_dir = context.system_properties["model_dir"]
        with open(os.path.join(model_dir, SETTINGS_FILE)) as f:
            settings = json.load(f)
        self._np, self._torch = np, torch
        self._sample_shape = tuple(int(d) for d in settings["input_shape"])
        self._sample_size = int(np.prod(self._sample_shape))
        torch.set_num_threads(int(settings["threads"]))
        # One batch runs at a time per worker: inter-op threads would only add threads
        # beyond the budget the other platforms get.
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # fixed for good once any inter-op work ran in this process
        serialized = context.manifest["model"]["serializedFile"]
        self._model = torch.jit.load(os.path.join(model_dir, serialized), map_location="cpu")
        self._model.eval()
        self.initialized = True

    def _decode(self, row: dict[str, Any]):
        body = row.get("body") if row.get("body") is not None else row.get("data")
        if not isinstance(body, (bytes, bytearray)):
            raise ValueError("the request body must be raw float32 bytes "
                             "(Content-Type: application/octet-stream)")
        values = self._np.frombuffer(bytes(body), dtype=self._np.float32)
        if values.size == 0 or values.size % self._sample_size:
            raise ValueError(f"a body of {values.size} float32 values is not a whole number "
                             f"of samples of shape {self._sample_shape}")
        return values.reshape(-1, *self._sample_shape)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        np, torch = self._np, self._torch
        batches = [self._decode(row) for row in data]
        merged = batches[0] if len(batches) == 1 else np.concatenate(batches, axis=0)
        with torch.inference_mode():
            result = self._model(torch.from_numpy(np.ascontiguousarray(merged)))
        result = result.numpy().astype(np.float32, copy=False)
        answers = []
        for index, rows in enumerate(np.split(result, np.cumsum([len(b) for b in batches])[:-1])):
            context.set_response_content_type(index, "application/octet-stream")
            context.set_response_header(index, SHAPE_HEADER, ",".join(map(str, rows.shape)))
            answers.append(np.ascontiguousarray(rows).tobytes())
        return answers


_service = RawTensorHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe's module-level entry point: initialise once, then serve batches."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
