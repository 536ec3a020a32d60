"""The TF Serving Predict messages, built from a hand-written descriptor.

The official classes come with `tensorflow-serving-api`, which depends on the whole of
TensorFlow (~1.3 GB, ~9 s to import): too heavy for a load generator. A gRPC peer sees only
bytes on the wire, and those are fixed by package names, field numbers and types, so this
module declares the few messages the Predict call needs with exactly those of the official
protos (`tensorflow/core/framework/{types,tensor_shape,tensor}.proto`,
`tensorflow_serving/apis/{model,predict}.proto`) and builds classes from them with
protobuf's own message factory. Fields the client never uses (resource handles, variants,
complex values, streamed-predict options) are left out: a parser keeps unknown fields, and
the wire form of what is declared is unchanged.

The descriptors live in a private pool under a file name of our own, so they never clash
with the official ones when tensorflow is imported in the same process (the wire test does
exactly that).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

from inferbench.errors import InferBenchError

PACKAGE = "tensorflow.serving"
SERVICE = f"{PACKAGE}.PredictionService"
PREDICT_METHOD = f"/{SERVICE}/Predict"

# tensorflow.DataType values (types.proto) for the dtypes a benchmark sends or receives.
DATA_TYPES: dict[str, int] = {
    "DT_INVALID": 0, "DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4,
    "DT_INT16": 5, "DT_INT8": 6, "DT_STRING": 7, "DT_INT64": 9, "DT_BOOL": 10,
    "DT_BFLOAT16": 14, "DT_UINT16": 17, "DT_HALF": 19, "DT_UINT32": 22, "DT_UINT64": 23,
}
NUMPY_TO_DT: dict[np.dtype, int] = {
    np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3,
    np.dtype(np.uint8): 4, np.dtype(np.int16): 5, np.dtype(np.int8): 6,
    np.dtype(np.int64): 9, np.dtype(np.bool_): 10, np.dtype(np.uint16): 17,
    np.dtype(np.float16): 19, np.dtype(np.uint32): 22, np.dtype(np.uint64): 23,
}
DT_TO_NUMPY: dict[int, np.dtype] = {v: k for k, v in NUMPY_TO_DT.items()}
# Which repeated field of TensorProto carries a dtype's values when tensor_content is empty.
_VALUE_FIELD: dict[int, str] = {1: "float_val", 2: "double_val", 3: "int_val", 4: "int_val",
                                5: "int_val", 6: "int_val", 9: "int64_val", 10: "bool_val",
                                17: "int_val", 19: "half_val", 22: "uint32_val",
                                23: "uint64_val"}

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED


def _field(message, name: str, number: int, ftype: int, label: int = _OPTIONAL,
           type_name: str = "", oneof_index: int | None = None) -> None:
    field = message.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        field.type_name = type_name
    if oneof_index is not None:
        field.oneof_index = oneof_index


def _map_entry(message, entry_name: str, value_type: str) -> None:
    """map<string, value_type> as protoc writes it: a nested *Entry message, map_entry set."""
    entry = message.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=value_type)


def file_descriptor() -> tuple[descriptor_pb2.FileDescriptorProto,
                             list[descriptor_pb2.DescriptorProto]]:
    """The proto3 file of the framework messages (package tensorflow: DataType,
    TensorShapeProto, TensorProto), and the serving messages (ModelSpec, PredictRequest,
    PredictResponse) that go into a second file of package tensorflow.serving."""
    f = descriptor_pb2.FileDescriptorProto(
        name="inferbench/tfserving_predict.proto", package="tensorflow", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    enum = f.enum_type.add(name="DataType")
    for name, number in DATA_TYPES.items():
        enum.value.add(name=name, number=number)

    shape = f.message_type.add(name="TensorShapeProto")
    dim = shape.nested_type.add(name="Dim")
    _field(dim, "size", 1, _F.TYPE_INT64)
    _field(dim, "name", 2, _F.TYPE_STRING)
    _field(shape, "dim", 2, _F.TYPE_MESSAGE, _REPEATED, ".tensorflow.TensorShapeProto.Dim")
    _field(shape, "unknown_rank", 3, _F.TYPE_BOOL)

    tensor = f.message_type.add(name="TensorProto")
    _field(tensor, "dtype", 1, _F.TYPE_ENUM, type_name=".tensorflow.DataType")
    _field(tensor, "tensor_shape", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.TensorShapeProto")
    _field(tensor, "version_number", 3, _F.TYPE_INT32)
    _field(tensor, "tensor_content", 4, _F.TYPE_BYTES)
    # Repeated scalars are packed by default in proto3, as in tensor.proto.
    for name, number, ftype in (("half_val", 13, _F.TYPE_INT32), ("float_val", 5, _F.TYPE_FLOAT),
                                ("double_val", 6, _F.TYPE_DOUBLE), ("int_val", 7, _F.TYPE_INT32),
                                ("string_val", 8, _F.TYPE_BYTES), ("int64_val", 10, _F.TYPE_INT64),
                                ("bool_val", 11, _F.TYPE_BOOL), ("uint32_val", 16, _F.TYPE_UINT32),
                                ("uint64_val", 17, _F.TYPE_UINT64)):
        _field(tensor, name, number, ftype, _REPEATED)

    # tensorflow_serving/apis/model.proto; nested names below carry the serving package.
    spec = descriptor_pb2.DescriptorProto(name="ModelSpec")
    spec.oneof_decl.add(name="version_choice")
    _field(spec, "name", 1, _F.TYPE_STRING)
    _field(spec, "version", 2, _F.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value",
           oneof_index=0)
    _field(spec, "version_label", 4, _F.TYPE_STRING, oneof_index=0)
    _field(spec, "signature_name", 3, _F.TYPE_STRING)

    request = descriptor_pb2.DescriptorProto(name="PredictRequest")
    _field(request, "model_spec", 1, _F.TYPE_MESSAGE, type_name=f".{PACKAGE}.ModelSpec")
    _map_entry(request, "InputsEntry", ".tensorflow.TensorProto")
    _field(request, "inputs", 2, _F.TYPE_MESSAGE, _REPEATED,
           f".{PACKAGE}.PredictRequest.InputsEntry")
    _field(request, "output_filter", 3, _F.TYPE_STRING, _REPEATED)

    response = descriptor_pb2.DescriptorProto(name="PredictResponse")
    _field(response, "model_spec", 2, _F.TYPE_MESSAGE, type_name=f".{PACKAGE}.ModelSpec")
    _map_entry(response, "OutputsEntry", ".tensorflow.TensorProto")
    _field(response, "outputs", 1, _F.TYPE_MESSAGE, _REPEATED,
           f".{PACKAGE}.PredictResponse.OutputsEntry")
    return f, [spec, request, response]


def _serving_file(messages) -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="inferbench/tfserving_predict_service.proto", package=PACKAGE, syntax="proto3",
        dependency=["google/protobuf/wrappers.proto", "inferbench/tfserving_predict.proto"])
    f.message_type.extend(messages)
    return f


@functools.cache
def messages() -> SimpleNamespace:
    """The message classes: TensorProto, TensorShapeProto, ModelSpec, PredictRequest,
    PredictResponse (and DataType values in DATA_TYPES)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(
        wrappers_pb2.DESCRIPTOR.serialized_pb))
    framework, serving = file_descriptor()
    pool.Add(framework)
    pool.Add(_serving_file(serving))

    def cls(name: str):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    return SimpleNamespace(
        TensorProto=cls("tensorflow.TensorProto"),
        TensorShapeProto=cls("tensorflow.TensorShapeProto"),
        ModelSpec=cls(f"{PACKAGE}.ModelSpec"),
        PredictRequest=cls(f"{PACKAGE}.PredictRequest"),
        PredictResponse=cls(f"{PACKAGE}.PredictResponse"))


def tensor_proto(array: np.ndarray):
    """A TensorProto of `array` as tf.make_tensor_proto writes a numeric ndarray: dtype,
    shape, and the values as raw little-endian bytes in tensor_content."""
    dtype = NUMPY_TO_DT.get(array.dtype)
    if dtype is None:
        raise InferBenchError(f"input dtype {array.dtype} has no TF Serving DataType here; "
                              f"supported: {', '.join(map(str, NUMPY_TO_DT))}")
    proto = messages().TensorProto(dtype=dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")
                                                ).tobytes()
    return proto


def to_ndarray(proto) -> np.ndarray:
    """The array of a TensorProto, from tensor_content or the typed *_val field (TF Serving
    answers with either, depending on version and dtype)."""
    dtype = DT_TO_NUMPY.get(proto.dtype)
    if dtype is None:
        raise InferBenchError(f"tensor dtype {proto.dtype} is not supported; supported "
                              f"DataType values: {sorted(DT_TO_NUMPY)}")
    shape = [d.size for d in proto.tensor_shape.dim]
    count = int(np.prod(shape)) if shape else 1
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")) \
            .astype(dtype).reshape(shape)
    values = getattr(proto, _VALUE_FIELD[proto.dtype])
    if proto.dtype == DATA_TYPES["DT_HALF"]:  # half_val carries the 16 bits in an int32
        flat = np.array(values, dtype=np.uint16).view(np.float16)
    else:
        flat = np.array(values, dtype=dtype)
    if flat.size == 1 and count != 1:  # one value fills the whole shape (tensor.proto)
        flat = np.full(count, flat[0], dtype=dtype)
    if flat.size != count:
        raise InferBenchError(f"tensor of shape {shape} carries {flat.size} values")
    return flat.reshape(shape)
