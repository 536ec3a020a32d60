"""SavedModel export (convert stage): the TensorFlow port of each generator family gives the
PyTorch outputs within the spec's default tolerance, through the stage's own exporter and
runner (the SavedModel's serving_default signature, as TF Serving calls it)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from inferbench.models.generator import build_model, sample_input  # noqa: E402
from inferbench.spec import BenchmarkSpec, ModelFormat, ModelSpec  # noqa: E402
from inferbench.stages.convert import CHECK_SEED, EXPORTERS, run_artifact  # noqa: E402

FIELDS = BenchmarkSpec.model_fields
ATOL, RTOL = FIELDS["conversion_atol"].default, FIELDS["conversion_rtol"].default

FAMILIES = [
    ModelSpec(family="fc", depth=3, width=16, input_shape=[12]),
    ModelSpec(family="cnn", depth=2, width=8, input_shape=[3, 9, 7]),  # not square: NCHW order
    ModelSpec(family="lstm", depth=2, width=16, input_shape=[5, 6]),
    ModelSpec(family="attention", depth=2, width=16, input_shape=[5, 6], num_outputs=3),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    export, filename = EXPORTERS[ModelFormat.SAVEDMODEL]
    out = {}
    for spec in FAMILIES:
        model = build_model(spec)
        path = tmp_path_factory.mktemp(spec.family.value) / filename
        tool = export(model, {"input": sample_input(spec, 1, CHECK_SEED)}, path, "cpu")
        out[spec.family.value] = (spec, model, path, tool)
    return out


@pytest.mark.parametrize("spec", FAMILIES, ids=lambda s: s.family.value)
def test_savedmodel_matches_pytorch_within_default_tolerance(exported, spec):
    _, model, path, tool = exported[spec.family.value]
    assert tool.startswith("tf_port (tensorflow ")
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    infer = run_artifact(ModelFormat.SAVEDMODEL, path)
    for batch in (1, 5):  # the stage checks the smallest and largest batch sizes
        x = sample_input(spec, batch, CHECK_SEED + batch)
        with torch.no_grad():
            ref = model(x).numpy()
        got = infer({"input": x.numpy()})
        assert got.shape == ref.shape == (batch, spec.num_outputs)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=ATOL, rtol=RTOL)


def test_serving_signature_is_input_to_output(exported):
    spec, _, path, _ = exported["cnn"]
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    (_, inputs) = signature.structured_input_signature
    assert list(inputs) == ["input"]
    assert inputs["input"].shape.as_list() == [None, *spec.input_shape]
    assert inputs["input"].dtype == tf.float32
    assert list(signature.structured_outputs) == ["output"]
    assert signature.structured_outputs["output"].shape.as_list() == [None, spec.num_outputs]


def test_different_weights_give_different_outputs(exported, tmp_path):
    """The port really reads the PyTorch weights (not only the architecture)."""
    spec, _, path, _ = exported["fc"]
    other = build_model(spec.model_copy(update={"seed": 1}))
    x = sample_input(spec, 2, 3)
    export, _ = EXPORTERS[ModelFormat.SAVEDMODEL]
    export(other, {"input": x}, tmp_path / "other", "cpu")
    a = run_artifact(ModelFormat.SAVEDMODEL, path)({"input": x.numpy()})
    b = run_artifact(ModelFormat.SAVEDMODEL, tmp_path / "other")({"input": x.numpy()})
    assert not np.allclose(a, b)
    with torch.no_grad():
        np.testing.assert_allclose(b, other(x).numpy(), atol=ATOL, rtol=RTOL)


def test_a_savedmodel_directory_is_read_as_a_users_model_file(exported):
    """model.path may name a SavedModel: its serving signature gives the inputs' names,
    types and shapes, and its parameters are counted from its variables."""
    from inferbench.models.user_model import count_parameters, read_signature

    spec, model, path, _ = exported["fc"]  # no batch norm: its variables are its parameters
    for given in (path, path / "saved_model.pb"):
        sig = read_signature(given, "model.path")
        assert sig.format is ModelFormat.SAVEDMODEL and sig.output == "output"
        assert [(i.name, i.dtype, i.dims) for i in sig.inputs] == [
            ("input", "float32", tuple(spec.input_shape))]
    assert count_parameters(ModelFormat.SAVEDMODEL, path) == sum(
        p.numel() for p in model.parameters())
