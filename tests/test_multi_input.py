"""Models with several inputs and integer inputs (BERT's token ids and attention mask): the
signature, the spec, and every protocol's request carrying them, read back the way the
server side reads it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from inferbench.errors import InferBenchError
from inferbench.load import v2protocol
from inferbench.load.protocols import get_protocol
from inferbench.load.protocols.base import Target
from inferbench.models import signature
from inferbench.models.signature import Fill, TensorSpec
from inferbench.spec import ModelSpec

TARGET = Target("http://127.0.0.1:1", "m", "input", "output")
# Two int64 inputs and a float one, in signature order.
BATCH = {
    "input_ids": np.array([[101, 7592, 102], [101, 2088, 102]], dtype=np.int64),
    "attention_mask": np.array([[1, 1, 1], [1, 1, 0]], dtype=np.int64),
    "scale": np.array([[0.5], [-1.25]], dtype=np.float32),
}


def _same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype, name
        np.testing.assert_array_equal(got[name], array)


# --- the signature ----------------------------------------------------------------------------

def test_bert_base_takes_token_ids_and_a_mask_of_its_sequence():
    spec = ModelSpec(architecture="bert_base")
    assert spec.input_shape == [128] and spec.num_outputs == 2
    ids, mask = spec.generated_inputs
    assert (ids.name, ids.dtype, ids.shape, ids.fill, ids.vocab) == (
        "input_ids", "int64", (128,), Fill.TOKENS, 30522)
    assert (mask.name, mask.dtype, mask.shape, mask.fill) == (
        "attention_mask", "int64", (128,), Fill.MASK)
    assert spec.sample_elements == 256
    assert spec.name == "bert_base_in128_o2_s0"


def test_the_generator_and_images_keep_one_float_input():
    assert ModelSpec(family="fc", input_shape=[8]).generated_inputs == (
        TensorSpec("input", "float32", (8,)),)
    (image,) = ModelSpec(architecture="resnet50").generated_inputs
    assert (image.name, image.dtype, image.shape) == ("input", "float32", (3, 224, 224))


@pytest.mark.parametrize("shape, fix", [([513], "1 to 512 tokens"), ([0], "1 to 512"),
                                        ([3, 224, 224], "takes 1")])
def test_bert_sequence_out_of_range_names_the_field_and_fix(shape, fix):
    with pytest.raises(ValueError, match="input_shape") as err:
        ModelSpec(architecture="bert_base", input_shape=shape)
    assert fix in str(err.value)


def test_payloads_follow_the_signature():
    spec = ModelSpec(architecture="bert_base", input_shape=[16])
    batch = signature.sample_inputs(spec.generated_inputs, 4, np.random.default_rng(0))
    assert list(batch) == ["input_ids", "attention_mask"]
    assert batch["input_ids"].shape == (4, 16) and batch["input_ids"].dtype == np.int64
    assert batch["input_ids"].min() >= 0 and batch["input_ids"].max() < 30522
    assert batch["input_ids"].std() > 1000  # drawn over the vocabulary, not a constant
    assert (batch["attention_mask"] == 1).all()


def test_signature_text_round_trip_and_bad_text():
    inputs = ModelSpec(architecture="bert_base", input_shape=[64]).generated_inputs
    text = signature.to_text(inputs)
    assert text == "input_ids:int64:64;attention_mask:int64:64"
    assert [(t.name, t.dtype, t.shape) for t in signature.from_text(text)] == [
        (t.name, t.dtype, t.shape) for t in inputs]
    with pytest.raises(InferBenchError, match="name:dtype:d1,d2"):
        signature.from_text("input_ids-int64-64")
    with pytest.raises(InferBenchError, match="element type 'int8'"):
        signature.from_text("x:int8:4")


def test_inputs_that_disagree_on_the_batch_are_refused():
    with pytest.raises(InferBenchError, match="disagree on the batch size"):
        get_protocol("kserve-v2").build(TARGET, {"a": np.zeros((2, 3), np.int64),
                                                 "b": np.zeros((3, 3), np.int64)})


# --- every protocol carries them --------------------------------------------------------------

def test_kserve_binary_carries_each_input_with_its_type():
    request = get_protocol("kserve-v2").build(TARGET, BATCH)
    tensors, header = v2protocol.decode_request(
        request.body, request.headers[v2protocol.HEADER_LENGTH])
    assert [i["datatype"] for i in header["inputs"]] == ["INT64", "INT64", "FP32"]
    _same(tensors, BATCH)


def test_kserve_json_carries_each_input_with_its_type():
    request = get_protocol("kserve-v2-json").build(TARGET, BATCH)
    tensors, header = v2protocol.decode_request(request.body, None)
    assert [i["datatype"] for i in header["inputs"]] == ["INT64", "INT64", "FP32"]
    _same(tensors, BATCH)


def test_kserve_grpc_carries_each_input_as_raw_contents():
    pytest.importorskip("tritonclient.grpc")
    from tritonclient.grpc import service_pb2

    target = Target("grpc://127.0.0.1:1", "m", "input", "output")
    message = service_pb2.ModelInferRequest.FromString(
        get_protocol("kserve-v2-grpc").build(target, BATCH).body)
    got = {t.name: np.frombuffer(raw, v2protocol.DTYPES[t.datatype]).reshape(list(t.shape))
           for t, raw in zip(message.inputs, message.raw_input_contents, strict=True)}
    _same(got, BATCH)


def test_tfserving_rest_sends_one_named_object_per_instance():
    body = json.loads(get_protocol("tfserving-rest").build(TARGET, BATCH).body)
    assert body["instances"][1] == {"input_ids": [101, 2088, 102],
                                    "attention_mask": [1, 1, 0], "scale": [-1.25]}
    # One input keeps TF Serving's bare row format.
    single = json.loads(get_protocol("tfserving-rest").build(TARGET, BATCH["scale"]).body)
    assert single == {"instances": [[0.5], [-1.25]]}


def test_tfserving_grpc_puts_each_input_in_the_inputs_map():
    from inferbench.load import tfserving_pb

    target = Target("grpc://127.0.0.1:1", "m", "input", "output")
    request = tfserving_pb.messages().PredictRequest.FromString(
        get_protocol("tfserving-grpc").build(target, BATCH).body)
    got = {name: tfserving_pb.to_ndarray(request.inputs[name]) for name in BATCH}
    for name, array in BATCH.items():
        np.testing.assert_array_equal(got[name], array)
        assert got[name].dtype == array.dtype


@pytest.mark.parametrize("protocol", ["http-raw", "http-json"])
def test_protocols_of_one_unnamed_tensor_refuse_several_inputs(protocol):
    with pytest.raises(InferBenchError, match="takes 3 .*fix: use a protocol that names"):
        get_protocol(protocol).build(Target("http://127.0.0.1:1/x"), BATCH)


def test_torchserve_body_is_read_back_by_the_real_handler(tmp_path):
    """The project's TorchServe handler, run in process on a traced two-input TorchScript
    model: the torchserve protocol's body (each input's bytes in signature order) comes back
    as the same tensors, including with two requests merged by TorchServe's batching."""
    torch = pytest.importorskip("torch")
    from inferbench.servers import torchserve_handler

    class TwoInputs(torch.nn.Module):
        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return (ids * mask).sum(dim=1, keepdim=True).float()

    ids, mask = BATCH["input_ids"], BATCH["attention_mask"]
    traced = torch.jit.trace(TwoInputs(), (torch.from_numpy(ids), torch.from_numpy(mask)))
    traced.save(str(tmp_path / "m.pt"))
    inputs = [{"name": n, "dtype": "int64", "shape": [3]} for n in ("input_ids",
                                                                   "attention_mask")]
    (tmp_path / torchserve_handler.SETTINGS_FILE).write_text(json.dumps(
        {"inputs": inputs, "threads": 1, "device": "cpu"}))

    class Context:
        system_properties = {"model_dir": str(tmp_path)}
        manifest = {"model": {"serializedFile": "m.pt"}}
        headers: dict[int, dict[str, str]] = {}

        def set_response_content_type(self, index, value):
            pass

        def set_response_header(self, index, name, value):
            self.headers.setdefault(index, {})[name] = value

    handler, context = torchserve_handler.RawTensorHandler(), Context()
    handler.initialize(context)
    body = get_protocol("torchserve").build(TARGET, {"input_ids": ids,
                                                     "attention_mask": mask}).body
    assert len(body) == ids.nbytes + mask.nbytes
    answers = handler.handle([{"body": body}, {"body": body}], context)
    want = (ids * mask).sum(axis=1, keepdims=True).astype(np.float32)
    for index, answer in enumerate(answers):
        np.testing.assert_array_equal(np.frombuffer(answer, np.float32).reshape(2, 1), want)
        assert context.headers[index][torchserve_handler.SHAPE_HEADER] == "2,1"
    with pytest.raises(ValueError, match="not a whole number of samples"):
        handler.handle([{"body": body[:-8]}], context)
    assert os.path.exists(tmp_path / "m.pt")


def test_standalone_load_builds_every_input_from_inputs_or_the_metadata(monkeypatch):
    """`inferbench load --inputs ...`, or a KServe model whose metadata lists several
    inputs: batches carry each input by name with its type (int64 inputs as ones)."""
    import argparse

    from inferbench.load import standalone
    from inferbench.load.protocols.kserve import KServeV2Binary

    args = argparse.Namespace(
        endpoint="http://127.0.0.1:1", protocol="kserve-v2", model="bert", input_name=None,
        output_name=None, input_shape=None, batch_size=2, seed=0,
        inputs="input_ids:int64:4;attention_mask:int64:4")
    target, batches = standalone.build_target_and_batches(args)
    assert list(batches[0]) == ["input_ids", "attention_mask"]
    assert batches[0]["input_ids"].shape == (2, 4) and (batches[0]["input_ids"] == 1).all()

    meta = {"inputs": [{"name": "ids", "datatype": "INT64", "shape": [-1, 8]},
                       {"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 2]}]}
    monkeypatch.setattr(KServeV2Binary, "model_metadata", lambda self, url, model: meta)
    target, batches = standalone.build_target_and_batches(
        argparse.Namespace(**{**vars(args), "inputs": None}))
    assert target.output_name == "logits"
    assert {k: (v.dtype, v.shape) for k, v in batches[0].items()} == {
        "ids": (np.dtype(np.int64), (2, 8)), "x": (np.dtype(np.float32), (2, 3))}
    meta["inputs"][0]["shape"] = [-1, -1]
    with pytest.raises(InferBenchError, match="fix: give --inputs"):
        standalone.build_target_and_batches(argparse.Namespace(**{**vars(args),
                                                                  "inputs": None}))
