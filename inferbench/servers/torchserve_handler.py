"""TorchServe handler that serves a TorchScript model on raw tensors.

Packed into the model archive (.mar) by the torchserve backend and run by TorchServe's
Python worker (`ts.model_service_worker`), so it imports only torch, numpy and the
standard library, never `inferbench`. Its settings come from `inferbench.json`, an extra
file of the archive: the model's inputs (name, element type, one sample's shape), the intra-op
thread budget every platform gets, the device to run on ("cpu" or "gpu:<index>": PyTorch's
cuda:<index>, never a quiet fall-back to the CPU) and the file where the worker reports the
device its loaded model is on (the serve stage reads it: TorchServe has no API for it).

Wire format (the `torchserve` protocol of the load generator): the request body is each
input's C-order bytes for a batch of samples, one input after the other in the model's
signature order (a single float32 input: just its bytes), so the batch size is the body's
length over one sample's bytes of all inputs; the answer is the float32 bytes of its outputs,
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
        # (name, numpy dtype, one sample's shape) per input, in order, and one sample's
        # bytes of each.
        self._inputs = [(i["name"], np.dtype(i["dtype"]), tuple(int(d) for d in i["shape"]))
                        for i in settings["inputs"]]
        self._sample_bytes = [dtype.itemsize * int(np.prod(shape))
                              for _, dtype, shape in self._inputs]
        torch.set_num_threads(int(settings["threads"]))
        # One batch runs at a time per worker: inter-op threads would only add threads
        # beyond the budget the other platforms get.
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # fixed for good once any inter-op work ran in this process
        self._device = _torch_device(torch, settings.get("device", "cpu"))
        serialized = context.manifest["model"]["serializedFile"]
        self._model = torch.jit.load(os.path.join(model_dir, serialized),
                                     map_location=self._device)
        self._model.eval()
        if settings.get("device_report"):
            _report_device(settings["device_report"], self._model, self._device)
        self.initialized = True

    def _decode(self, row: dict[str, Any]) -> list:
        """One request's input arrays, in signature order."""
        body = row.get("body") if row.get("body") is not None else row.get("data")
        if not isinstance(body, (bytes, bytearray)):
            raise ValueError("the request body must be raw tensor bytes "
                             "(Content-Type: application/octet-stream)")
        body = bytes(body)
        per_sample = sum(self._sample_bytes)
        if not body or len(body) % per_sample:
            described = ", ".join(f"{n} {d} {list(s)}" for n, d, s in self._inputs)
            raise ValueError(f"a body of {len(body)} bytes is not a whole number of samples "
                             f"of the inputs ({described}: {per_sample} bytes a sample)")
        rows, arrays, offset = len(body) // per_sample, [], 0
        for (_, dtype, shape), size in zip(self._inputs, self._sample_bytes, strict=True):
            arrays.append(self._np.frombuffer(body, dtype=dtype, count=rows * size
                                              // dtype.itemsize, offset=offset)
                          .reshape(rows, *shape))
            offset += rows * size
        return arrays

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        np, torch = self._np, self._torch
        batches = [self._decode(row) for row in data]
        merged = [parts[0] if len(batches) == 1 else np.concatenate(parts, axis=0)
                  for parts in zip(*batches, strict=True)]
        with torch.inference_mode():
            result = self._model(*(torch.from_numpy(np.ascontiguousarray(m)).to(self._device)
                                   for m in merged))
        result = result.cpu().numpy().astype(np.float32, copy=False)
        answers = []
        sizes = [len(b[0]) for b in batches]
        for index, rows in enumerate(np.split(result, np.cumsum(sizes)[:-1])):
            context.set_response_content_type(index, "application/octet-stream")
            context.set_response_header(index, SHAPE_HEADER, ",".join(map(str, rows.shape)))
            answers.append(np.ascontiguousarray(rows).tobytes())
        return answers


def _torch_device(torch: Any, device: str) -> Any:
    """torch.device for "cpu" or "gpu[:<index>]"; refuses a GPU this torch cannot use (the
    check of inferbench.servers.runtimes.torch_device, which this file cannot import)."""
    if device == "cpu":
        return torch.device("cpu")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= visible:
        raise RuntimeError(f"asked to run the model on {device}, but this torch sees "
                           f"{visible} CUDA device(s) (CUDA build: {torch.version.cuda}); "
                           "refusing to fall back to the CPU")
    return torch.device("cuda", index)


def _report_device(path: str, model: Any, device: Any) -> None:
    """Where the loaded model's tensors are (its first parameter or buffer; the device it
    was loaded to when it has none), written whole (temporary file, then rename)."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    actual = tensor.device if tensor is not None else device
    spelled = "cpu" if actual.type == "cpu" else f"gpu:{actual.index or 0}"
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as out:
        json.dump({"device": spelled, "torch_device": str(actual), "pid": os.getpid(),
                   "accelerator": None if actual.type == "cpu" else str(actual)}, out)
    os.replace(tmp, path)


_service = RawTensorHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe's module-level entry point: initialise once, then serve batches."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
