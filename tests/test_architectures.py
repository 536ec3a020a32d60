"""Well-known architectures (inferbench/models/architectures.py): the spec's checks, the
models built from their definitions with seeded weights (parameter counts as published),
and one served end to end with its FLOPs counted for the roofline."""

from __future__ import annotations

import pytest

from inferbench.errors import InferBenchError
from inferbench.spec import spec_from_conf

BASE = {"platforms": ["onnxruntime"], "formats": ["onnx"]}


def _spec(model: dict, **fields):
    return spec_from_conf({**BASE, "model": model, **fields})


def test_an_architecture_takes_its_own_input_and_head_unless_told():
    spec = _spec({"architecture": "resnet50"})
    assert spec.model.input_shape == [3, 224, 224] and spec.model.num_outputs == 1000
    assert spec.model.kind == "resnet50" and spec.model.family is None
    assert spec.model.name == "resnet50_in3x224x224_o1000_s0"
    small = _spec({"architecture": "mobilenet_v2", "input_shape": [3, 96, 96],
                   "num_outputs": 10})
    assert small.model.input_shape == [3, 96, 96] and small.model.num_outputs == 10


@pytest.mark.parametrize(("model", "fields", "says"), [
    ({"architecture": "resnet50", "family": "cnn"}, {}, "gives family and architecture; fix"),
    ({"input_shape": [3, 8, 8]}, {}, "gives none of family, architecture, path and registered"),
    ({"architecture": "resnet50", "depth": 4}, {}, "model.depth sizes the canonical generator"),
    ({"architecture": "resnet50", "input_shape": [1, 224, 224]}, {}, "takes 3 channels"),
    ({"architecture": "mobilenet_v2", "input_shape": [3, 16, 16]}, {}, "at least 32 x 32"),
    ({"architecture": "resnet50", "input_shape": [224, 224]}, {}, "takes 3; fix: give 3"),
    ({"architecture": "vgg16"}, {}, "'resnet50', 'mobilenet_v2' or 'bert_base'"),
    ({"architecture": "resnet50"}, {"formats": ["onnx", "savedmodel"]}, "has no such port"),
])
def test_a_bad_model_is_refused_naming_the_field_and_the_fix(model, fields, says):
    with pytest.raises(InferBenchError, match=says):
        _spec(model, **fields)


def test_generator_specs_keep_their_hash():
    """Runs are compared by spec hash: adding `architecture` must not change old ones."""
    from inferbench.spec import example_spec

    assert "architecture" not in example_spec().model_dump_json(exclude_none=True)
    assert example_spec().spec_hash() == "18d825795882ba22"


@pytest.mark.parametrize(("name", "published"), [("resnet50", 25_557_032),
                                                  ("mobilenet_v2", 3_504_872)])
def test_the_builds_have_the_published_parameter_counts_and_seeded_weights(name, published):
    import torch

    from inferbench.models.generator import build_model, count_parameters, sample_input

    spec = _spec({"architecture": name, "input_shape": [3, 64, 64]}).model
    model = build_model(spec)
    assert count_parameters(model) == published
    again = build_model(spec)
    other = build_model(spec.model_copy(update={"seed": 1}))
    x = sample_input(spec, 2, seed=0)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 1000)
        assert torch.equal(out, again(x)) and not torch.equal(out, other(x))


@pytest.mark.integration
def test_mobilenet_v2_is_converted_served_and_measured_with_its_flops_counted(inferbench_env):
    """The whole pipeline on ONNX Runtime; the roofline's count of the exported graph is
    the published MobileNetV2 figure (300 M multiply-adds at 224 x 224) scaled to 64 x 64."""
    from test_pipeline import SPEC, run_stages

    from analysis.roofline import count_graph

    spec = {**SPEC, "name": "arch-mobilenet", "formats": ["onnx"],
            "model": {"architecture": "mobilenet_v2", "input_shape": [3, 64, 64]},
            "slo": {"percentile": 99, "latency_ms": 2000}}
    summary = run_stages("arch-mobilenet", spec)
    assert summary["points"] >= 1
    conversions = pytest.importorskip("json").loads(
        (inferbench_env / "runs" / "arch-mobilenet" / "model" / "conversions.json").read_text())
    assert conversions["onnx"]["passed"]
    flops = count_graph(conversions["onnx"]["artifact_path"]).flops
    expected = 2 * 300e6 * (64 * 64) / (224 * 224)
    assert flops == pytest.approx(expected, rel=0.15)
