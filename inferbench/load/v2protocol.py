"""KServe V2 inference over HTTP with the binary tensor extension.

Tensors travel as raw bytes after a JSON header whose length is given in the
`Inference-Header-Content-Length` HTTP header; JSON-encoding floats would make the
benchmark measure the JSON codec instead of the model. Used by the load generator, the
project's own FastAPI server and the conformance checks, so both ends agree byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from inferbench.errors import InferBenchError

HEADER_LENGTH = "Inference-Header-Content-Length"
# The V2 datatypes the load generator and the project's server speak, both ways; every
# protocol (HTTP binary, HTTP JSON, gRPC) uses these two tables.
DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
DATATYPE_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}
# Raw bytes (a JPEG, a text, a label): an object array of `bytes`. On the binary wire each
# element is its length as a little-endian uint32, then its bytes (KServe V2's encoding).
BYTES = "BYTES"


def encode_bytes(array: np.ndarray) -> bytes:
    """A BYTES tensor's binary data, elements in row-major order."""
    return b"".join(len(e).to_bytes(4, "little") + bytes(e) for e in array.ravel())


def decode_bytes(blob: bytes | memoryview, count: int) -> np.ndarray:
    """`count` length-prefixed elements of a BYTES tensor's binary data."""
    out, offset = np.empty(count, dtype=object), 0
    for i in range(count):
        n = int.from_bytes(blob[offset:offset + 4], "little")
        out[i] = bytes(blob[offset + 4:offset + 4 + n])
        offset += 4 + n
    return out


def datatype_of(name: str, array: np.ndarray) -> str:
    """The V2 datatype of an input array, or an error naming the input and the fix."""
    if array.dtype == object:
        return BYTES
    try:
        return DATATYPE_NAMES[array.dtype]
    except KeyError:
        raise InferBenchError(f"input {name!r} has element type {array.dtype}, which V2 clients "
                         f"here do not send; fix: one of {sorted(map(str, DATATYPE_NAMES))}") \
            from None


def encode_request(inputs: dict[str, np.ndarray], output_name: str) -> tuple[bytes, dict]:
    """Body and headers of one binary infer request: each input's bytes after the header,
    in the header's order."""
    entries, blobs = [], []
    for name, array in inputs.items():
        array = np.ascontiguousarray(array)
        datatype = datatype_of(name, array)
        raw = encode_bytes(array) if datatype == BYTES else array.tobytes()
        entries.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                        "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    header = {"inputs": entries,
              "outputs": [{"name": output_name, "parameters": {"binary_data": True}}]}
    head = json.dumps(header, separators=(",", ":")).encode()
    headers = {HEADER_LENGTH: str(len(head)), "Content-Type": "application/octet-stream"}
    return head + b"".join(blobs), headers


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    if header_length is None:  # plain JSON, no binary part
        return json.loads(body), b""
    n = int(header_length)
    return json.loads(body[:n]), body[n:]


def _tensors(entries: list[dict[str, Any]], blob: bytes) -> dict[str, np.ndarray]:
    """Tensors of a header's inputs/outputs, binary ones cut from `blob` in order."""
    tensors, offset = {}, 0
    for entry in entries:
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if entry["datatype"] == BYTES:
            count = int(np.prod(entry["shape"]))
            data = (decode_bytes(memoryview(blob)[offset:offset + size], count)
                    if size is not None else
                    np.array([str(e).encode() for e in entry["data"]], dtype=object))
            offset += size or 0
            tensors[entry["name"]] = data.reshape(entry["shape"])
            continue
        dtype = DTYPES[entry["datatype"]]
        if size is not None:
            data = np.frombuffer(blob, dtype=dtype, count=size // np.dtype(dtype).itemsize,
                                 offset=offset)
            offset += size
        else:
            data = np.asarray(entry["data"], dtype=dtype)
        tensors[entry["name"]] = data.reshape(entry["shape"])
    return tensors


def decode_request(body: bytes, header_length: str | None) -> tuple[dict[str, np.ndarray], dict]:
    """Input tensors of an infer request and its JSON header (server side)."""
    header, blob = _split(body, header_length)
    return _tensors(header["inputs"], blob), header


def encode_response(model_name: str, outputs: dict[str, np.ndarray], binary: bool,
                    request_id: str | None = None) -> tuple[bytes, dict]:
    """Body and headers of an infer response (server side)."""
    entries, blobs = [], []
    for name, array in outputs.items():
        array = np.ascontiguousarray(array)
        datatype = datatype_of(name, array)
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape),
                                 "datatype": datatype}
        if binary:
            raw = encode_bytes(array) if datatype == BYTES else array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = ([bytes(e).decode(errors="replace") for e in array.ravel()]
                             if datatype == BYTES else array.ravel().tolist())
        entries.append(entry)
    header: dict[str, Any] = {"model_name": model_name, "outputs": entries}
    if request_id:
        header["id"] = request_id
    head = json.dumps(header, separators=(",", ":")).encode()
    if not binary:
        return head, {"Content-Type": "application/json"}
    return head + b"".join(blobs), {HEADER_LENGTH: str(len(head)),
                                    "Content-Type": "application/octet-stream"}


def decode_response(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """Output tensors of an infer response (client side)."""
    header, blob = _split(body, header_length)
    if "error" in header:
        raise ValueError(f"server error: {header['error']}")
    return _tensors(header["outputs"], blob)
