"""The TF-Serving gRPC Predict client (protocol "tfserving-grpc").

Two kinds of check, neither of which involves TF Serving itself (it only runs from its
Docker image; see tests/test_tfserving.py for the live test):
- wire compatibility: our hand-written messages against TensorFlow's own generated
  classes (tensor_pb2 from tensorflow; predict_pb2 from tensorflow-serving-api, installed
  with --no-deps), when those are importable;
- a round trip through a protocol test fixture: a small grpcio server in this file that
  implements PredictionService/Predict with our own descriptors (it doubles the input).
"""

from __future__ import annotations

from concurrent import futures

import numpy as np
import pytest

from inferbench.load import tfserving_pb
from inferbench.load.protocols import get_protocol
from inferbench.load.protocols.base import Target
from inferbench.load.runner import StopRule, run_point
from inferbench.netutil import free_port

grpc = pytest.importorskip("grpc")

BATCH = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 7


def _request_bytes(target: Target, batch: np.ndarray) -> bytes:
    return get_protocol("tfserving-grpc").build(target, batch).body


# --- wire compatibility with TensorFlow's own classes ---------------------------------------

def test_tensor_proto_is_byte_identical_to_tensorflows_make_tensor_proto():
    """Compares TensorProto only: ours vs tf.make_tensor_proto, and parsed by tensor_pb2."""
    tf = pytest.importorskip("tensorflow")
    from tensorflow.core.framework import tensor_pb2

    for batch in (BATCH, BATCH.astype(np.float64), np.arange(6, dtype=np.int64).reshape(3, 2),
                  np.array([[1, 0]], dtype=np.int32)):
        ours = tfserving_pb.tensor_proto(batch).SerializeToString()
        assert ours == tf.make_tensor_proto(batch).SerializeToString()
        np.testing.assert_array_equal(tf.make_ndarray(tensor_pb2.TensorProto.FromString(ours)),
                                      batch)


def test_field_numbers_match_tensorflows_descriptors():
    """Compares descriptors: every field we declare has the official number, type and label
    (tensor.proto / tensor_shape.proto from tensorflow; model.proto / predict.proto from
    tensorflow-serving-api when installed)."""
    pytest.importorskip("tensorflow")
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    official = [tensor_pb2.TensorProto, tensor_shape_pb2.TensorShapeProto,
                tensor_shape_pb2.TensorShapeProto.Dim]
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2
        official += [model_pb2.ModelSpec, predict_pb2.PredictRequest, predict_pb2.PredictResponse]
    except ImportError:
        pass
    pb = tfserving_pb.messages()
    ours = {m.DESCRIPTOR.full_name: m for m in (
        pb.TensorProto, pb.TensorShapeProto, pb.TensorShapeProto.Dim, pb.ModelSpec,
        pb.PredictRequest, pb.PredictResponse)}
    for cls in official:
        mine = ours[cls.DESCRIPTOR.full_name].DESCRIPTOR
        for field in mine.fields:
            theirs = cls.DESCRIPTOR.fields_by_name[field.name]
            assert (field.number, field.type, field.is_packed) == \
                (theirs.number, theirs.type, theirs.is_packed), field.full_name
            if field.message_type:
                assert field.message_type.full_name == theirs.message_type.full_name
    official_types = {v.name: v.number for v in types_pb2.DataType.DESCRIPTOR.values}
    for name, number in tfserving_pb.DATA_TYPES.items():
        assert official_types[name] == number


def test_predict_request_and_response_parse_with_tensorflow_serving_api():
    """Compares whole PredictRequest / PredictResponse with tensorflow-serving-api's
    predict_pb2 (pip install --no-deps tensorflow-serving-api==2.21.0), both directions."""
    tf = pytest.importorskip("tensorflow")
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")

    body = _request_bytes(Target("grpc://127.0.0.1:1", "m", "input", "output"), BATCH)
    official = predict_pb2.PredictRequest.FromString(body)
    assert official.model_spec.name == "m"
    assert official.model_spec.signature_name == "serving_default"
    assert list(official.output_filter) == ["output"]
    np.testing.assert_array_equal(tf.make_ndarray(official.inputs["input"]), BATCH)
    assert official.SerializeToString() == body  # nothing unknown, nothing lost

    answer = predict_pb2.PredictResponse()
    answer.model_spec.name = "m"
    answer.model_spec.version.value = 3
    answer.outputs["output"].CopyFrom(tf.make_tensor_proto(BATCH[:, 0]))
    # An answer in the typed-field form (float_val), as TF Serving writes small tensors.
    scalar = answer.outputs["scores"]
    scalar.dtype = tf.float32.as_datatype_enum
    scalar.tensor_shape.dim.add(size=2)
    scalar.float_val.extend([0.5, 1.5])
    decoded = get_protocol("tfserving-grpc").decode({}, answer.SerializeToString())
    np.testing.assert_array_equal(decoded["output"], BATCH[:, 0])
    np.testing.assert_array_equal(decoded["scores"], np.array([0.5, 1.5], dtype=np.float32))
    mine = tfserving_pb.messages().PredictResponse.FromString(answer.SerializeToString())
    assert mine.model_spec.version.value == 3


def test_to_ndarray_fills_a_single_value_and_reads_half_val():
    pb = tfserving_pb.messages()
    filled = pb.TensorProto(dtype=tfserving_pb.DATA_TYPES["DT_FLOAT"], float_val=[2.0])
    filled.tensor_shape.dim.add(size=3)
    np.testing.assert_array_equal(tfserving_pb.to_ndarray(filled), np.full(3, 2.0, np.float32))
    half = pb.TensorProto(dtype=tfserving_pb.DATA_TYPES["DT_HALF"],
                          half_val=np.array([1.5, -2], np.float16).view(np.uint16).tolist())
    half.tensor_shape.dim.add(size=2)
    np.testing.assert_array_equal(tfserving_pb.to_ndarray(half), np.array([1.5, -2], np.float16))


# --- round trip through a protocol test fixture ---------------------------------------------

@pytest.fixture
def predict_fixture_server():
    """A grpcio server implementing tensorflow.serving.PredictionService/Predict with our
    own descriptors (not TF Serving): it answers output = 2 * input for model "m"."""
    pb = tfserving_pb.messages()
    seen: list = []

    def predict(request, context):
        seen.append(request)
        if request.model_spec.name != "m":
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: "
                                                     f"{request.model_spec.name}")
        x = tfserving_pb.to_ndarray(request.inputs["input"])
        response = pb.PredictResponse()
        response.model_spec.name = "m"
        response.outputs["output"].CopyFrom(tfserving_pb.tensor_proto(2 * x))
        return response

    handler = grpc.method_handlers_generic_handler(tfserving_pb.SERVICE, {
        "Predict": grpc.unary_unary_rpc_method_handler(
            predict, request_deserializer=pb.PredictRequest.FromString,
            response_serializer=pb.PredictResponse.SerializeToString)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield f"grpc://127.0.0.1:{port}", seen
    finally:
        server.stop(grace=None)


def test_send_once_check_and_decode_round_trip(predict_fixture_server):
    url, seen = predict_fixture_server
    protocol = get_protocol("tfserving-grpc")
    request = protocol.build(Target(url, "m", "input", "output"), BATCH)
    assert request.url == f"{url}/tensorflow.serving.PredictionService/Predict"
    status, headers, body = protocol.send_once(request)
    protocol.check(status, headers, body, len(BATCH))
    np.testing.assert_allclose(protocol.decode(headers, body)["output"], 2 * BATCH)
    assert seen[0].model_spec.signature_name == "serving_default"
    protocol.probe(Target(url, "m", "input", "output"), BATCH)


def test_unknown_model_fails_with_the_servers_reason(predict_fixture_server):
    from inferbench.errors import InferBenchError

    url, _ = predict_fixture_server
    protocol = get_protocol("tfserving-grpc")
    with pytest.raises(InferBenchError, match="NOT_FOUND: Servable not found: other"):
        protocol.send_once(protocol.build(Target(url, "other", "input", "output"), BATCH))


def test_issuer_drives_prepared_predict_requests_over_grpc(predict_fixture_server):
    """The requests run through the load generator's gRPC transport, as in a benchmark."""
    url, seen = predict_fixture_server
    protocol = get_protocol("tfserving-grpc")
    requests = [protocol.build(Target(url, "m", "input", "output"), BATCH)]
    records = run_point(requests, concurrency=2, seed=0, warmup_s=0.1,
                        rule=StopRule(min_duration_s=0.5, min_requests=20, max_duration_s=5),
                        request_timeout_s=5)
    assert len(records) >= 20
    assert set(records.arrays()["status"].tolist()) == {200}


def test_build_refuses_an_http_endpoint():
    from inferbench.errors import InferBenchError

    with pytest.raises(InferBenchError, match="grpc://HOST:PORT"):
        get_protocol("tfserving-grpc").build(Target("http://127.0.0.1:8501", "m"), BATCH)


def test_inferbench_load_drives_the_predict_service(predict_fixture_server, capsys):
    """`inferbench load --protocol tfserving-grpc`, the stand-alone use, end to end."""
    import json

    from inferbench.cli import main

    url, seen = predict_fixture_server
    code = main(["load", "--endpoint", url, "--protocol", "tfserving-grpc", "--model", "m",
                 "--input-name", "input", "--output-name", "output", "--input-shape", "4",
                 "--batch-size", "2", "--rate", "50", "--duration", "0.5",
                 "--min-requests", "10", "--warmup", "0", "--stability-windows", "0",
                 "--max-late-pct", "100", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and summary["n_ok"] >= 10 and summary["n_failed"] == 0
    assert seen[-1].inputs["input"].tensor_shape.dim[0].size == 2


def test_inferbench_load_asks_for_the_model_name(capsys):
    from inferbench.cli import main

    code = main(["load", "--endpoint", "grpc://127.0.0.1:9", "--protocol", "tfserving-grpc",
                 "--input-shape", "4", "--rate", "5"])
    assert code == 1 and "needs --model; fix: add --model NAME" in capsys.readouterr().err
