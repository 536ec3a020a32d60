"""TorchServe's inference API with raw tensors: POST /predictions/<model>.

The body is each input's C-order bytes for the batch, one input after the other in the
model's signature order (the order the batch gives them); the answer is the outputs' float32
bytes with their shape in the X-Output-Shape header, as the project's TorchServe handler
(inferbench/servers/torchserve_handler.py) reads and writes them. TorchServe's own example handlers
take images or JSON; a benchmark of tensors wants no decoding cost on either side.
"""

from __future__ import annotations

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.load.protocols.base import Batch, Protocol, Target, inputs_of, require_ok
from inferbench.load.runner import Request

SHAPE_HEADER = "x-output-shape"


class TorchServeRaw(Protocol):
    name = "torchserve"

    def build(self, target: Target, batch: Batch) -> Request:
        url = f"{target.url.rstrip('/')}/predictions/{target.model}"
        body = b"".join(np.ascontiguousarray(a).tobytes()
                        for a in inputs_of(target, batch).values())
        return Request(url, body,
                       {"Content-Type": "application/octet-stream", **target.extra_headers})

    def decode(self, headers: dict[str, str], body: bytes) -> dict[str, np.ndarray]:
        shape = headers.get(SHAPE_HEADER)
        try:
            dims = [int(d) for d in shape.split(",")] if shape else None
            values = np.frombuffer(body, dtype=np.float32)
            return {"output": values.reshape(dims) if dims else values}
        except ValueError as exc:
            raise InferBenchError(f"not a raw-tensor answer ({exc}; {SHAPE_HEADER}: {shape!r},"
                                  f" {len(body)} bytes); fix: serve the model with the "
                                  "project's TorchServe handler") from None

    def check(self, status: int, headers: dict[str, str], body: bytes, batch_size: int) -> None:
        require_ok(status, body, "TorchServe predictions")
        output = self.decode(headers, body)["output"]
        if output.ndim == 0 or output.shape[0] != batch_size:
            raise InferBenchError(f"TorchServe answered an output of shape {output.shape} for "
                                  f"a batch of {batch_size}")
