"""The user's own model files: the signature read from ONNX and TorchScript files and
completed by the spec, bad files refused naming the problem, whole runs on a user's ONNX
and TorchScript file, and the model registry in a real PostgreSQL through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_stages_for
from sqlalchemy import select

from inferbench import perfdb
from inferbench.cli import main
from inferbench.errors import InferBenchError
from inferbench.models.signature import Fill, TensorSpec
from inferbench.models.user_model import (
    complete_inputs,
    copy_onnx_naming_output,
    read_signature,
)
from inferbench.perfdb import schema
from inferbench.spec import InputSpec
from inferbench.stages import STAGES
from inferbench.stages.common import make_context, run_signature

VOCAB, CLASSES = 50, 3


class TinyText(torch.nn.Module):
    """Token ids and a mask -> logits: a text classifier's signature at toy size."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 8)
        self.head = torch.nn.Linear(8, CLASSES)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(pooled)


def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, CLASSES)).eval()


def text_onnx(path: Path) -> Path:
    """A text classifier exported with free batch and sequence axes, its output named
    'logits' (as Hugging Face exports name it)."""
    torch.manual_seed(0)
    ids = torch.zeros(2, 6, dtype=torch.int64)
    torch.onnx.export(TinyText().eval(), (ids, torch.ones_like(ids)), str(path), dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={n: {0: "batch", 1: "sequence"}
                                    for n in ("input_ids", "attention_mask")}, opset_version=17)
    return path


def cnn_torchscript(path: Path) -> Path:
    torch.jit.trace(tiny_cnn(), torch.randn(2, 3, 12, 12)).save(str(path))
    return path


def test_onnx_signature_is_read_and_its_free_axis_filled_by_the_spec(tmp_path):
    sig = read_signature(text_onnx(tmp_path / "text.onnx"), "model.path")
    assert [(i.name, i.dtype, i.dims) for i in sig.inputs] == [
        ("input_ids", "int64", ("sequence",)), ("attention_mask", "int64", ("sequence",))]
    assert sig.output == "logits" and sig.batch == "batch"
    given = [InputSpec(name="input_ids", shape=[16], vocab=VOCAB),
             InputSpec(name="attention_mask", shape=[16])]
    assert complete_inputs(sig, given, [1, 4]) == (
        TensorSpec("input_ids", "int64", (16,), Fill.TOKENS, VOCAB),
        TensorSpec("attention_mask", "int64", (16,), Fill.MASK))


@pytest.mark.parametrize("given, says", [
    ([], "shape of one sample of input 'input_ids' is open in the file"),
    ([{"name": "input_ids", "shape": [16]}, {"name": "attention_mask", "shape": [16]}],
     "give {\"name\": \"input_ids\", \"vocab\": N}"),
    ([{"name": "ids", "shape": [16]}], "names ['ids'], which the model file does not take"),
    ([{"name": "input_ids", "dtype": "float32", "shape": [16], "vocab": 5}],
     "dtype 'float32', but the file's input is int64"),
])
def test_what_the_file_leaves_open_must_be_given_and_agree(tmp_path, given, says):
    sig = read_signature(text_onnx(tmp_path / "text.onnx"), "model.path")
    with pytest.raises(InferBenchError, match="model.inputs") as err:
        complete_inputs(sig, [InputSpec(**g) for g in given], [1])
    assert says in str(err.value)


def test_torchscript_names_its_inputs_and_the_spec_gives_type_and_shape(tmp_path):
    sig = read_signature(cnn_torchscript(tmp_path / "cnn.pt"), "model.path")
    assert [(i.name, i.dtype, i.dims) for i in sig.inputs] == [("input", None, None)]
    with pytest.raises(InferBenchError, match=r"does not record input 'input'.*fix: add"):
        complete_inputs(sig, None, [1])
    (t,) = complete_inputs(sig, [InputSpec(name="input", dtype="float32", shape=[3, 12, 12])],
                           [1])
    assert (t.dtype, t.shape, t.fill) == ("float32", (3, 12, 12), Fill.NORMAL)


@pytest.mark.parametrize("name, content, says", [
    ("bad.onnx", b"\x08\x07garbage" * 10, "is not a valid ONNX model"),
    ("bad.pt", b"not a zip archive", "is not a TorchScript module"),
    ("missing.onnx", None, "does not exist"),
])
def test_a_bad_model_file_is_refused_naming_the_field_and_the_fix(tmp_path, name, content,
                                                                  says):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InferBenchError, match="model.path") as err:
        read_signature(path, "model.path")
    assert says in str(err.value) and "fix:" in str(err.value)


def test_a_state_dict_is_not_a_servable_torchscript_file(tmp_path):
    torch.save(tiny_cnn().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(InferBenchError, match="a state dict or a pickled nn.Module"):
        read_signature(tmp_path / "weights.pt", "model.path")


def test_the_served_copy_names_its_output_as_the_servers_expect(tmp_path):
    import onnxruntime as ort

    src = text_onnx(tmp_path / "text.onnx")
    assert copy_onnx_naming_output(src, tmp_path / "served.onnx", "output") == "logits"
    feeds = {"input_ids": np.array([[1, 2, 3]], np.int64),
             "attention_mask": np.ones((1, 3), np.int64)}
    before = ort.InferenceSession(str(src)).run(None, feeds)[0]
    session = ort.InferenceSession(str(tmp_path / "served.onnx"))
    assert [o.name for o in session.get_outputs()] == ["output"]
    np.testing.assert_array_equal(session.run(None, feeds)[0], before)


# --- whole runs, real PostgreSQL and real servers ---

def _spec(name: str, model: dict, platform: str) -> dict:
    return {"name": name, "model": model, "platforms": [platform], "batch_sizes": [1, 4],
            "workload": {"arrival": "poisson", "rate_rps": 30, "seed": 3},
            "warmup_s": 0.5, "min_duration_s": 2, "min_requests": 30, "max_duration_s": 10,
            "slo": {"percentile": 99, "latency_ms": 500}, "max_late_send_pct": 25}


@pytest.mark.integration
@pytest.mark.parametrize("platform", [
    "onnxruntime", pytest.param("openvino", marks=pytest.mark.slow),
    pytest.param("mlserver", marks=pytest.mark.slow),
    pytest.param("triton", marks=[pytest.mark.triton, pytest.mark.slow])])
def test_a_users_onnx_text_model_is_served_as_given_and_hashed(inferbench_env, db_url,
                                                               platform):
    data = inferbench_env / "data"
    data.mkdir(exist_ok=True)
    source = text_onnx(data / "classifier.onnx")
    run_id = f"user-onnx-{platform}"
    spec = _spec(run_id, {"path": "classifier.onnx", "inputs": [
        {"name": "input_ids", "shape": [16], "vocab": VOCAB},
        {"name": "attention_mask", "shape": [16]}]}, platform)
    summary = run_stages_for(run_id, spec, platform)
    assert summary["verdict"] == "VALID", summary["reasons"]
    ctx = make_context(run_id)
    assert run_signature(ctx).num_outputs == CLASSES
    with perfdb.engine(db_url).connect() as conn:
        (model,) = conn.execute(select(schema.models).where(
            schema.models.c.run_id == run_id)).all()
        (conv,) = conn.execute(select(schema.conversions).where(
            schema.conversions.c.run_id == run_id)).all()
    from inferbench.models.user_model import hash_model

    assert model.sha256 == hash_model(source) and model.family == "file"
    assert model.hyperparams["file"]["output_renamed_from"] == "logits"
    assert model.n_parameters == VOCAB * 8 + 8 * CLASSES + CLASSES
    assert conv.passed and conv.tool.startswith("none: the user's model file")


@pytest.mark.integration
@pytest.mark.parametrize("platform", ["torchscript",
                                      pytest.param("torchserve", marks=pytest.mark.slow)])
def test_a_users_torchscript_file_runs_on_the_torchscript_platforms(inferbench_env, db_url,
                                                                   platform):
    data = inferbench_env / "data"
    data.mkdir(exist_ok=True)
    cnn_torchscript(data / "cnn.pt")
    spec = _spec(f"user-ts-{platform}", {"path": "cnn.pt", "inputs": [
        {"name": "input", "dtype": "float32", "shape": [3, 12, 12]}]}, platform)
    summary = run_stages_for(f"user-ts-{platform}", spec, platform)
    assert summary["verdict"] == "VALID", summary["reasons"]


@pytest.mark.integration
def test_a_model_path_outside_the_data_directories_is_refused(inferbench_env, db_url,
                                                              tmp_path):
    cnn_torchscript(tmp_path / "cnn.pt")
    spec = _spec("user-outside", {"path": str(tmp_path / "cnn.pt"), "inputs": [
        {"name": "input", "dtype": "float32", "shape": [3, 12, 12]}]}, "torchscript")
    with pytest.raises(InferBenchError, match="model.path .* is outside the data directories"):
        STAGES["generate"](make_context("user-outside", spec_json=json.dumps(spec)))


@pytest.mark.integration
def test_the_registry_adds_lists_serves_checks_and_removes_a_model(inferbench_env, db_url,
                                                                  tmp_path, capsys):
    source = text_onnx(tmp_path / "classifier.onnx")
    assert main(["models", "add", "tiny-text", str(source), "--description", "toy"]) == 0
    out = capsys.readouterr().out
    assert "added: tiny-text (onnx" in out and "input input_ids: int64" in out
    assert main(["models", "add", "tiny-text", str(source)]) == 1
    assert "already registered" in capsys.readouterr().err
    assert main(["models", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "tiny-text" and listed["description"] == "toy"
    stored = Path(listed["stored_path"])
    assert stored.is_file() and stored.read_bytes() == source.read_bytes()

    spec = _spec("user-registered", {"registered": "tiny-text", "inputs": [
        {"name": "input_ids", "shape": [8], "vocab": VOCAB},
        {"name": "attention_mask", "shape": [8]}]}, "onnxruntime")
    ctx = make_context("user-registered", spec_json=json.dumps(spec))
    STAGES["generate"](ctx)
    STAGES["convert"](ctx)
    assert [t.shape for t in run_signature(ctx).inputs] == [(8,), (8,)]

    # A spec naming a file kind its platforms do not serve is refused at generate.
    wrong = {**spec, "name": "user-registered-ts", "platforms": ["torchscript"]}
    with pytest.raises(InferBenchError, match=r"formats \['torchscript'\]: model.registered "
                       r"is a model file in the onnx format"):
        STAGES["generate"](make_context("user-registered-ts", spec_json=json.dumps(wrong)))

    stored.write_bytes(stored.read_bytes() + b"\0")  # changed behind the registry's back
    with pytest.raises(InferBenchError, match="changed since it was added"):
        STAGES["generate"](make_context("user-registered-2", spec_json=json.dumps(
            {**spec, "name": "user-registered-2"})))

    assert main(["models", "remove", "tiny-text"]) == 0
    assert not stored.parent.exists()
    assert main(["models", "show", "tiny-text"]) == 1
    assert "not in the model registry" in capsys.readouterr().err
