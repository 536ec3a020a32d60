"""OpenVINO's inference precision: f32 by default (the other platforms' outputs), bf16 as an
explicit option carried from the spec to the server's runtime and named in its label."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from inferbench.backends.base import ServeContext, ServerConfig
from inferbench.backends.openvino import OpenVinoBackend
from inferbench.models.signature import single_input
from inferbench.server_grid import server_configs
from inferbench.spec import BenchmarkSpec, ModelSpec

SPEC = {
    "name": "ov", "model": {"family": "fc", "depth": 2, "width": 64, "input_shape": [32]},
    "formats": ["onnx"], "platforms": ["openvino"], "batch_sizes": [4],
    "workload": {"arrival": "closed_loop", "concurrency": 1, "seed": 1},
    "slo": {"percentile": 99, "latency_ms": 100},
}


def test_bf16_is_named_in_the_config_label_and_knobs():
    spec = BenchmarkSpec.model_validate({**SPEC, "server": {"openvino_precision": "bf16"}})
    (config,) = server_configs(spec)
    assert config.label == "db=off,inst=1,ov=bf16"
    assert config.knobs()["openvino_precision"] == "bf16"


def test_the_default_precision_leaves_the_spec_hash_as_before():
    omitted = BenchmarkSpec.model_validate({**SPEC, "server": {"instance_count": 2}})
    explicit = BenchmarkSpec.model_validate(
        {**SPEC, "server": {"instance_count": 2, "openvino_precision": "f32"}})
    bf16 = BenchmarkSpec.model_validate(
        {**SPEC, "server": {"instance_count": 2, "openvino_precision": "bf16"}})
    assert "openvino_precision" not in omitted.model_dump_json(exclude_defaults=True)
    assert omitted.spec_hash() == explicit.spec_hash() != bf16.spec_hash()


def test_bf16_without_openvino_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="applies to platform 'openvino' only"):
        BenchmarkSpec.model_validate({**SPEC, "platforms": ["onnxruntime"],
                                      "server": {"openvino_precision": "bf16"}})


def test_the_server_is_started_with_the_precision(tmp_path):
    ctx = ServeContext(model_name="m", model_path=tmp_path / "m.onnx", inputs=single_input((32,)),
                       num_outputs=10, workdir=tmp_path, http_port=1, grpc_port=2,
                       metrics_port=3, max_batch_size=4,
                       server=ServerConfig(openvino_precision="bf16"))
    argv = OpenVinoBackend().launch_plan(ctx).argv
    assert argv[argv.index("--precision") + 1] == "bf16"


def test_bf16_runs_in_bf16_where_the_cpu_has_it(tmp_path):
    ov = pytest.importorskip("openvino")
    torch = pytest.importorskip("torch")
    from inferbench.models.generator import build_model
    from inferbench.servers.runtimes import load_instances

    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(build_model(ModelSpec(**SPEC["model"])), (torch.zeros(2, 32),),
                          str(path), dynamo=False, input_names=["input"],
                          output_names=["output"], opset_version=17,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    x = np.random.default_rng(3).standard_normal((4, 32), dtype=np.float32)
    (f32,) = load_instances("openvino", str(path), 1, 1, precision="f32")
    (bf16,) = load_instances("openvino", str(path), 1, 1, precision="bf16")
    assert f32.version.endswith("(f32)") and bf16.version.endswith("(bf16)")
    out32, out16 = f32.run({"input": x})[0], bf16.run({"input": x})[0]
    scale = float(np.max(np.abs(out32)))
    # bf16 keeps 8 bits of mantissa: close to f32, but not equal, on a CPU that runs it.
    assert np.max(np.abs(out16 - out32)) <= 0.05 * scale
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert np.max(np.abs(out16 - out32)) > 1e-6 * scale
    else:
        np.testing.assert_array_equal(out16, out32)  # the plugin falls back to f32


def test_other_runtimes_refuse_bf16():
    from inferbench.errors import InferBenchError
    from inferbench.servers.runtimes import load_instances

    with pytest.raises(InferBenchError, match="OpenVINO option"):
        load_instances("onnxruntime", "m.onnx", 1, 1, precision="bf16")
