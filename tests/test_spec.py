"""Spec validation: every error names the field, shows the value and says how to fix it."""

from __future__ import annotations

import json

import pytest

from inferbench.errors import InferBenchError
from inferbench.spec import BenchmarkSpec, example_spec, json_schema, parse_spec


def demo() -> dict:
    return example_spec().model_dump(mode="json")


def error_of(data: dict) -> str:
    with pytest.raises(InferBenchError) as info:
        parse_spec(data)
    return str(info.value)


def test_example_round_trips_through_json():
    data = json.loads(json.dumps(demo()))
    assert parse_spec(data) == example_spec()


def test_unknown_top_level_key_is_rejected_with_allowed_keys():
    msg = error_of({**demo(), "batchsize": 4})
    assert "unknown key 'batchsize' in spec" in msg
    assert "batch_sizes" in msg  # the allowed keys are listed


def test_unknown_nested_key_names_its_parent():
    data = demo()
    data["model"]["layers"] = 3
    msg = error_of(data)
    assert "unknown key 'layers' in model" in msg and "depth" in msg


def test_bad_enum_lists_the_allowed_values():
    data = demo()
    data["platforms"] = ["triton", "tensorrt-llm"]
    msg = error_of(data)
    assert "platforms.1" in msg and "'tensorrt-llm'" in msg
    assert "'triton'" in msg and "'onnxruntime'" in msg


def test_out_of_range_number_names_field_and_value():
    data = demo()
    data["workload"]["rate_rps"] = -5
    msg = error_of(data)
    assert "workload.rate_rps" in msg and "-5" in msg and "greater than 0" in msg


def test_poisson_without_rate_says_how_to_fix():
    data = demo()
    del data["workload"]["rate_rps"]
    msg = error_of(data)
    assert "poisson" in msg and "rate_rps" in msg and "fix" in msg


def test_closed_loop_rejects_a_rate():
    data = demo()
    data["workload"] = {"arrival": "closed_loop", "concurrency": 2, "rate_rps": 10}
    assert "rate_rps 10.0 is only for arrival 'poisson'" in error_of(data)


def test_input_shape_must_match_family():
    data = demo()
    data["model"]["input_shape"] = [3, 32]
    msg = error_of(data)
    assert "input_shape [3, 32]" in msg and "'cnn' takes 3" in msg


def test_platform_needs_its_format():
    data = demo()
    data["formats"] = ["torchscript"]
    msg = error_of(data)
    assert "platform 'triton' serves the 'onnx' format" in msg and "add 'onnx'" in msg


def test_every_platform_needs_the_format_its_descriptor_names():
    # The check reads each backend's descriptor: a platform is accepted exactly when the
    # format its descriptor names is listed.
    from inferbench.platforms import descriptors

    for platform, facts in descriptors().items():
        data = {**demo(), "platforms": [platform.value], "formats": [facts.model_format.value]}
        assert parse_spec(data).platforms == [platform]
        others = [f for f in ("onnx", "torchscript", "savedmodel") if f != facts.model_format]
        msg = error_of({**data, "formats": others})
        assert f"serves the {facts.model_format.value!r} format" in msg


def test_grpc_transport_only_for_platforms_that_speak_it():
    data = demo()  # triton and onnxruntime; onnxruntime serves HTTP only
    data["workload"] = {**data["workload"], "transport": "grpc"}
    msg = error_of(data)
    assert "workload.transport 'grpc' is not spoken by platforms ['onnxruntime']" in msg
    assert "(only by ['triton', 'mlserver', 'tfserving'])" in msg and "fix" in msg
    data["platforms"] = ["triton"]
    assert parse_spec(data).workload.transport.value == "grpc"


def test_platform_names_still_import_from_the_spec():
    from inferbench import platforms, spec

    assert (spec.Platform, spec.ModelFormat, spec.Transport) == (
        platforms.Platform, platforms.ModelFormat, platforms.Transport)


def test_missing_required_field():
    data = demo()
    del data["slo"]
    assert "field `slo` is required" in error_of(data)


def test_duplicates_and_duration_bounds():
    data = {**demo(), "batch_sizes": [1, 1]}
    assert "lists a value twice" in error_of(data)
    data = {**demo(), "min_duration_s": 30, "max_duration_s": 10}
    assert "max_duration_s 10.0 is below min_duration_s 30.0" in error_of(data)


def test_not_an_object():
    with pytest.raises(InferBenchError, match="expected a JSON object, got list"):
        parse_spec([1, 2])


def test_json_schema_is_self_contained_and_documented():
    schema = json_schema()
    assert "$defs" not in json.dumps(schema) and "$ref" not in json.dumps(schema)
    workload = schema["properties"]["workload"]
    assert workload["properties"]["arrival"]["enum"][:2] == ["closed_loop", "poisson"]
    assert {"constant", "gamma", "step", "spike", "ramp", "trace"} <= set(
        workload["properties"]["arrival"]["enum"])
    assert workload["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"spec field {name} has no description"


def test_spec_hash_is_stable_and_sensitive():
    a, b = example_spec(), example_spec()
    assert a.spec_hash() == b.spec_hash()
    changed = BenchmarkSpec.model_validate({**demo(), "warmup_s": 4})
    assert changed.spec_hash() != a.spec_hash()
