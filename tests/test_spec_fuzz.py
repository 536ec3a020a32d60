"""The spec fuzzed from its own JSON schema (the one the Airflow form and the REST API
validate against) and from arbitrary JSON: parse_spec either accepts, and then the spec is
finite and within every budget, or refuses with InferBenchError; nothing else escapes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from inferbench.errors import InferBenchError
from inferbench.spec import (
    MAX_CONCURRENCY,
    MAX_PLANNED_S,
    MAX_REQUEST_ELEMENTS,
    BenchmarkSpec,
    example_spec,
    json_schema,
    parse_spec,
)

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12)


def numbers(node) -> list[float]:
    if isinstance(node, dict):
        return [x for v in node.values() for x in numbers(v)]
    if isinstance(node, list):
        return [x for v in node for x in numbers(v)]
    return [node] if isinstance(node, int | float) and not isinstance(node, bool) else []


def check(data) -> None:
    try:
        spec = parse_spec(data)
    except InferBenchError as exc:
        assert str(exc).strip()
        return
    assert isinstance(spec, BenchmarkSpec)
    assert all(math.isfinite(x) for x in numbers(spec.model_dump(mode="json")))
    assert spec.planned_load_s <= MAX_PLANNED_S
    assert spec.model.is_file or (max(spec.batch_sizes) * spec.model.sample_elements
                                  <= MAX_REQUEST_ELEMENTS)
    concurrency = spec.workload.concurrency
    assert all(c <= MAX_CONCURRENCY for c in
               (concurrency if isinstance(concurrency, list) else [concurrency or 1]))


PROPERTIES = json_schema()["properties"]
# The example spec with one to three fields drawn from their own schemas: about half are
# accepted (a whole spec drawn at random almost never passes the cross-field checks).
SCHEMA_FIELDS = st.lists(
    st.sampled_from(sorted(PROPERTIES)).flatmap(
        lambda name: st.tuples(st.just(name), from_schema(PROPERTIES[name]))),
    min_size=1, max_size=3)


@FUZZ
@given(SCHEMA_FIELDS)
def test_fields_the_schema_allows_are_accepted_within_budget_or_refused_cleanly(fields):
    data = example_spec().model_dump(mode="json")
    data.update(fields)
    check(data)


@settings(FUZZ, max_examples=100)
@given(from_schema(json_schema()))
def test_whole_specs_the_schema_allows_are_refused_cleanly_when_not_accepted(data):
    check(data)


@FUZZ
@given(st.sampled_from(sorted(example_spec().model_dump(mode="json"))), JSON)
def test_any_json_in_any_field_is_refused_cleanly_or_accepted_within_budget(field, value):
    data = example_spec().model_dump(mode="json")
    data[field] = value
    check(json.loads(json.dumps(data)))  # NaN and Infinity survive Python's JSON round trip


@pytest.mark.parametrize("raw", ["[]", "null", "1e999", '"spec"', "{}"])
def test_documents_that_are_not_a_spec_object_are_refused_cleanly(raw):
    with pytest.raises(InferBenchError):
        parse_spec(json.loads(raw))
