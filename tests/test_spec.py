"""Spec validation: every error names the field, shows the value and says how to fix it."""

from __future__ import annotations

import json

import pytest

from inferbench.errors import InferBenchError
from inferbench.spec import MAX_CONCURRENCY, BenchmarkSpec, example_spec, json_schema, parse_spec


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


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("max_duration_s",), float("inf"), ["max_duration_s", "finite number"]),
    (("min_duration_s",), float("nan"), ["min_duration_s", "finite number"]),
    (("workload", "rate_rps"), float("inf"), ["workload.rate_rps", "inf is out of range"]),
    (("workload", "rate_rps"), float("nan"), ["workload.rate_rps", "nan is out of range"]),
    (("request_timeout_s",), 1e9, ["request_timeout_s", "less than or equal to 600"]),
    (("min_requests",), 10**12, ["min_requests", "less than or equal to 10000000"]),
    (("max_duration_s",), 86_400, ["max_duration_s", "less than or equal to 3600"]),
])
def test_unbounded_and_non_finite_numbers_are_refused(path, value, expected):
    data = demo()
    *parents, leaf = path
    node = data
    for key in parents:
        node = node[key]
    node[leaf] = value
    # Python's JSON reader accepts NaN and Infinity: the spec must refuse them itself.
    msg = error_of(json.loads(json.dumps(data)))
    for part in expected:
        assert part in msg, (part, msg)


def test_a_request_over_the_element_budget_names_the_largest_batch_that_fits():
    data = demo()
    data["model"] = {"family": "cnn", "input_shape": [3, 224, 224]}
    data["batch_sizes"] = [1, 4096]
    msg = error_of(data)
    assert "batch_sizes [1, 4096]" in msg and "[3, 224, 224]" in msg
    assert "requests of 616562688 numbers" in msg and "batch <= 111" in msg


def test_a_run_planned_beyond_a_day_is_refused_with_its_arithmetic():
    data = demo()
    data["batch_sizes"] = list(range(1, 65))
    data["max_duration_s"] = 3600
    msg = error_of(data)
    assert "may load servers for" in msg and "families" in msg and "fix" in msg
    assert BenchmarkSpec.model_validate(demo()).planned_load_s <= 24 * 3600


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
    from inferbench.backends import descriptors

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


# -- load ladders -------------------------------------------------------------------------

def test_a_single_rate_keeps_one_point_per_batch_size():
    spec = example_spec()
    assert spec.ladder_mode.value == "single" and spec.workload.loads == [40.0]


def test_a_list_of_rates_or_clients_is_a_ladder():
    data = demo()
    data["workload"]["rate_rps"] = [10, 20, 40.5]
    spec = parse_spec(data)
    assert spec.ladder_mode.value == "list" and spec.workload.rate_rps == [10.0, 20.0, 40.5]
    data["workload"] = {"arrival": "closed_loop", "concurrency": [1, 2, 4, 8]}
    spec = parse_spec(data)
    assert spec.ladder_mode.value == "list" and spec.workload.loads == [1.0, 2.0, 4.0, 8.0]


def test_search_takes_its_start_from_the_workload_and_has_defaults():
    data = demo()
    data["ladder"] = {"mode": "search"}
    ladder = parse_spec(data).ladder
    assert (ladder.growth, ladder.precision_pct, ladder.max_rungs, ladder.max_family_s,
            ladder.settle_s, ladder.stop_after_failure) == (2.0, 5.0, 12, 600.0, 1.0, True)


@pytest.mark.parametrize(("workload", "ladder", "expected"), [
    ({"rate_rps": [10, 40, 20]}, {},
     ["workload.rate_rps", "[10, 40, 20]", "rise strictly", "fix", "[10.0, 20.0, 40.0]"]),
    ({"rate_rps": [10, 0]}, {}, ["workload.rate_rps", "0 is out of range", "greater than 0"]),
    ({"rate_rps": "fast"}, {}, ["workload.rate_rps", "'fast' is not a rate", "fix"]),
    ({"rate_rps": []}, {}, ["workload.rate_rps", "empty list", "fix"]),
    ({"arrival": "closed_loop", "rate_rps": None, "concurrency": [1, 2000]}, {},
     ["workload.concurrency", "2000", f"1..{MAX_CONCURRENCY}"]),
    ({"arrival": "step", "rate_rps": [10, 20], "peak_rate_rps": 50, "change_at_s": 1}, {},
     ["rate_rps [10.0, 20.0]", "steady arrival", "'poisson', 'constant', 'gamma'", "'step'",
      "fix"]),
    ({}, {"mode": "list"}, ["ladder.mode 'list'", "workload.rate_rps", "40.0",
                            '"rate_rps": [40, 80, 160]']),
    ({"rate_rps": [10, 20]}, {"mode": "single"}, ["ladder.mode 'single'", "[10.0, 20.0]",
                                                  "fix"]),
    ({"rate_rps": [10, 20]}, {"mode": "search"}, ["ladder.mode 'search'", "one load",
                                                  '"rate_rps": 10.0']),
    ({"arrival": "trace", "rate_rps": None, "trace_path": "t.csv"}, {"mode": "search"},
     ["ladder.mode 'search'", "'trace'", "'poisson'", "'closed_loop'"]),
    ({"rate_rps": [10, 20, 40]}, {"max_rungs": 2},
     ["workload.rate_rps lists 3 loads", "ladder.max_rungs is 2", "raise ladder.max_rungs to 3"]),
    ({}, {"mode": "search", "max_family_s": 5},
     ["ladder.max_family_s 5.0", "warmup_s + min_duration_s = 15 s", "fix"]),
    ({}, {"mode": "search", "growth": 1.0}, ["ladder.growth", "1.0", "greater than 1"]),
    ({}, {"precision_pct": 0}, ["ladder.precision_pct", "0", "greater than or equal to 0.1"]),
    ({}, {"mode": "bisect"}, ["ladder.mode", "'bisect'", "'single', 'list' or 'search'"]),
    ({}, {"steps": 3}, ["unknown key 'steps' in ladder", "max_rungs", "precision_pct"]),
    ({"arrival": "constant"}, {"mode": "search", "predict": True},
     ["ladder.predict is true", "Poisson", "'constant'", 'fix: set workload.arrival to '
      '"poisson"']),
    ({}, {"profile_s": 0}, ["ladder.profile_s", "0", "greater than 0"]),
])
def test_ladder_errors_name_the_field_value_and_fix(workload, ladder, expected):
    data = demo()
    data["workload"].update(workload)
    data["ladder"] = ladder
    msg = error_of(data)
    for part in expected:
        assert part in msg, (part, msg)


def test_spec_hash_unchanged_by_the_ladder_defaults_and_changed_by_a_ladder():
    # Specs from before the ladder keep their hash (history and provenance match them): the
    # hashes these two had before ladders existed.
    old = {"name": "hash-check", "model": {"family": "fc", "input_shape": [16]},
           "platforms": ["onnxruntime"], "formats": ["onnx"],
           "workload": {"arrival": "poisson", "rate_rps": 25, "seed": 3},
           "slo": {"latency_ms": 20}}
    assert parse_spec(old).spec_hash() == "89237b44ac350ea6"
    assert parse_spec({**old, "ladder": {}}).spec_hash() == "89237b44ac350ea6"
    closed = {**old, "workload": {"arrival": "closed_loop", "concurrency": 4}}
    assert parse_spec(closed).spec_hash() == "1ef3ae8d92b93828"
    searched = parse_spec({**old, "ladder": {"mode": "search"}})
    assert searched.spec_hash() != "89237b44ac350ea6"
    listed = {**old, "workload": {"arrival": "poisson", "rate_rps": [25], "seed": 3}}
    assert parse_spec(listed).spec_hash() != "89237b44ac350ea6"


@pytest.mark.parametrize(("workload", "ladder", "predicts"), [
    ({}, {"mode": "search"}, True),                       # the default: a Poisson search
    ({}, {"mode": "search", "predict": False}, False),
    ({"rate_rps": [10, 20]}, {}, False),                  # a list: only when asked
    ({"rate_rps": [10, 20]}, {"predict": True}, True),
    ({"arrival": "gamma", "burstiness": 4}, {"mode": "search"}, False),  # not Poisson
    ({"arrival": "closed_loop", "rate_rps": None, "concurrency": 4}, {"mode": "search"},
     False),
])
def test_families_are_predicted_by_default_for_a_poisson_search(workload, ladder, predicts):
    data = demo()
    data["workload"].update(workload)
    data["ladder"] = ladder
    assert parse_spec(data).predicts is predicts
