"""TF Serving's gRPC Predict (`tensorflow.serving.PredictionService/Predict`), the API its
own clients use (TF Serving's --port).

Messages come from `inferbench.load.tfserving_pb` (hand-written descriptors with the official
package names and field numbers), not from tensorflow-serving-api, which would pull the
whole of TensorFlow into the load generator. The input travels as a TensorProto with the
values in tensor_content, which is what tf.make_tensor_proto writes for an ndarray. The
endpoint is grpc://HOST:PORT; requests are serialized once before the run and sent by the
issuer's gRPC transport (load/grpc_transport.py), like kserve-v2-grpc.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.load import tfserving_pb
from inferbench.load.grpc_transport import GRPC_SCHEME, OK_STATUS, split_grpc_url
from inferbench.load.protocols.base import Batch, Protocol, Target, check_batch_outputs, inputs_of
from inferbench.load.protocols.kserve_grpc import grpc_address, unary_call
from inferbench.load.runner import Request

SIGNATURE = "serving_default"


class TfServingGrpc(Protocol):
    name = "tfserving-grpc"

    def request_message(self, target: Target, batch: Batch) -> Any:
        """Each input a TensorProto in the signature's inputs map, by name."""
        pb = tfserving_pb.messages()
        request = pb.PredictRequest()
        request.model_spec.name = target.model
        request.model_spec.signature_name = SIGNATURE
        for name, array in inputs_of(target, batch).items():
            request.inputs[name].CopyFrom(tfserving_pb.tensor_proto(array))
        request.output_filter.append(target.output_name)
        return request

    def build(self, target: Target, batch: Batch) -> Request:
        grpc_address(target.url)
        body = self.request_message(target, batch).SerializeToString()
        return Request(f"{target.url.rstrip('/')}{tfserving_pb.PREDICT_METHOD}", body, {})

    def decode(self, headers: dict[str, str], body: bytes) -> dict[str, np.ndarray]:
        response = tfserving_pb.messages().PredictResponse.FromString(body)
        return {name: tfserving_pb.to_ndarray(t) for name, t in response.outputs.items()}

    def check(self, status: int, headers: dict[str, str], body: bytes, batch_size: int) -> None:
        if status != OK_STATUS:
            raise InferBenchError(f"gRPC Predict answered status {status}; fix: check "
                                  "--model, the signature's input name and the input shape")
        check_batch_outputs(self.decode(headers, body), batch_size)

    def send_once(self, request: Request, timeout_s: float = 30.0
                  ) -> tuple[int, dict[str, str], bytes]:
        address, method = split_grpc_url(request.url)
        response = unary_call(f"{GRPC_SCHEME}://{address}", method, request.body,
                              tfserving_pb.messages().PredictResponse, timeout_s)
        return OK_STATUS, {}, response.SerializeToString()
