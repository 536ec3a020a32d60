"""KServe / Triton V2 over gRPC (`inference.GRPCInferenceService`), the protocol Triton's own
clients and perf_analyzer use by default.

Messages are the V2 protobufs as tritonclient ships them (`tritonclient.grpc.service_pb2`);
tensors travel as `raw_input_contents` (bytes, no per-element encoding). The endpoint is
`grpc://HOST:PORT` (Triton's --grpc-port). Requests are serialized once before the run and
sent by the gRPC transport of the issuer (load/grpc_transport.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.load import v2protocol
from inferbench.load.grpc_transport import GRPC_SCHEME, OK_STATUS, grpc_module, split_grpc_url
from inferbench.load.protocols.base import Batch, Protocol, Target, check_batch_outputs, inputs_of
from inferbench.load.runner import Request

SERVICE = "inference.GRPCInferenceService"
INFER_METHOD = f"/{SERVICE}/ModelInfer"
METADATA_METHOD = f"/{SERVICE}/ModelMetadata"


def _pb2():
    try:
        from tritonclient.grpc import service_pb2
    except ImportError:
        raise InferBenchError("the kserve-v2-grpc protocol needs tritonclient's gRPC "
                              "messages; fix: pip install -e '.[grpc]'") from None
    return service_pb2


def grpc_address(url: str) -> str:
    """host:port of a grpc://HOST:PORT endpoint, with a message that says how to fix it."""
    parts = urlsplit(url)
    if parts.scheme != GRPC_SCHEME or not parts.hostname or not parts.port:
        raise InferBenchError(f"--endpoint {url!r} is not a gRPC endpoint; fix: give "
                              "grpc://HOST:PORT (Triton's --grpc-port)")
    return f"{parts.hostname}:{parts.port}"


def unary_call(url: str, method: str, request: Any, response_type: Any,
               timeout_s: float) -> Any:
    """One call outside the timed run (metadata, probe): `request` a message or its bytes;
    errors name the fix."""
    grpc = grpc_module()
    with grpc.insecure_channel(grpc_address(url)) as channel:
        call = channel.unary_unary(
            method, request_serializer=lambda m: m if isinstance(m, bytes)
            else m.SerializeToString(), response_deserializer=response_type.FromString)
        try:
            return call(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise InferBenchError(f"{url}{method} failed: {exc.code().name}: {exc.details()}; "
                                  "fix: start the server, or check --endpoint and --model") \
                from None


def model_metadata(url: str, model: str) -> dict[str, Any]:
    """The model's inputs and outputs in the shape of the HTTP metadata JSON."""
    pb2 = _pb2()
    meta = unary_call(url, METADATA_METHOD, pb2.ModelMetadataRequest(name=model),
                      pb2.ModelMetadataResponse, 10.0)
    return {"name": meta.name,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                       for t in meta.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                        for t in meta.outputs]}


def decode_outputs(response: Any) -> dict[str, np.ndarray]:
    out = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=False):
        dtype = v2protocol.DTYPES.get(tensor.datatype)
        if dtype is None:
            raise InferBenchError(f"output {tensor.name!r} has datatype {tensor.datatype!r}; "
                                  f"supported: {', '.join(v2protocol.DTYPES)}")
        out[tensor.name] = np.frombuffer(raw, dtype=dtype).reshape(list(tensor.shape))
    return out


class KServeV2Grpc(Protocol):
    name = "kserve-v2-grpc"

    def request_message(self, target: Target, batch: Batch) -> Any:
        """Each input a tensor entry with its bytes in raw_input_contents, in order."""
        pb2 = _pb2()
        request = pb2.ModelInferRequest(model_name=target.model)
        for name, array in inputs_of(target, batch).items():
            tensor = request.inputs.add()
            tensor.name, tensor.datatype = name, v2protocol.datatype_of(name, array)
            tensor.shape.extend(array.shape)
            request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
        request.outputs.add().name = target.output_name
        return request

    def build(self, target: Target, batch: Batch) -> Request:
        grpc_address(target.url)
        body = self.request_message(target, batch).SerializeToString()
        return Request(f"{target.url.rstrip('/')}{INFER_METHOD}", body, {})

    def decode(self, headers: dict[str, str], body: bytes) -> dict[str, np.ndarray]:
        return decode_outputs(_pb2().ModelInferResponse.FromString(body))

    def check(self, status: int, headers: dict[str, str], body: bytes, batch_size: int) -> None:
        if status != OK_STATUS:
            raise InferBenchError(f"gRPC ModelInfer answered status {status}; fix: check "
                                  "--model and the input shape")
        check_batch_outputs(self.decode(headers, body), batch_size)

    def model_metadata(self, url: str, model: str) -> dict[str, Any]:
        return model_metadata(url, model)

    def send_once(self, request: Request, timeout_s: float = 30.0
                  ) -> tuple[int, dict[str, str], bytes]:
        address, method = split_grpc_url(request.url)
        response = unary_call(f"{GRPC_SCHEME}://{address}", method, request.body,
                              _pb2().ModelInferResponse, timeout_s)
        return OK_STATUS, {}, response.SerializeToString()
