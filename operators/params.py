"""The DAG's Params, generated from the BenchmarkSpec JSON schema.

The trigger form thus shows every spec field with its description, enum choices and
bounds, and Airflow rejects a bad value before any task runs. The demo spec gives the
defaults, so an unattended trigger with no conf runs the demo benchmark.

A nested section (model, workload, slo, ...) is a JSON editor in the form, which shows no
inner field: its description therefore lists them, each with its allowed values, bounds
and default, and its title is the field's name in words, not the schema's class name.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from inferbench.spec import example_spec, json_schema

# Keys pydantic emits that are annotations, not constraints, for Airflow's form.
_DROP = {"default"}
_ACRONYMS = {"slo": "SLO", "rps": "req/s", "ms": "ms"}


def title_of(name: str) -> str:
    """A field's title in words: "batch_sizes" -> "Batch sizes", "slo" -> "SLO"."""
    words = [_ACRONYMS.get(w, w) for w in name.split("_")]
    first = words[0] if words[0] in _ACRONYMS.values() else words[0].capitalize()
    return " ".join([first, *words[1:]])


def _choices(prop: dict[str, Any]) -> dict[str, Any]:
    """The constraints of a property, whichever anyOf branch (besides null) carries them."""
    merged = dict(prop)
    for branch in prop.get("anyOf", []):
        if branch.get("type") != "null":
            merged = {**branch, **merged}
    if merged.get("type") == "array" and isinstance(merged.get("items"), dict):
        merged = {**merged["items"], "array": True, **{k: v for k, v in merged.items()
                                                        if k in ("description", "default")}}
    return merged


def describe_field(name: str, prop: dict[str, Any]) -> str:
    """One inner field as the form's help lists it, e.g. "depth: 1..64, default 2"."""
    c = _choices(prop)
    parts = []
    if "enum" in c:
        parts.append("one of " + ", ".join(map(str, c["enum"])))
    low = c.get("minimum", c.get("exclusiveMinimum"))
    high = c.get("maximum", c.get("exclusiveMaximum"))
    if low is not None or high is not None:
        left = "" if low is None else f"{'>' if 'exclusiveMinimum' in c else ''}{low:g}"
        right = "" if high is None else f"{'<' if 'exclusiveMaximum' in c else ''}{high:g}"
        parts.append(f"{left}..{right}")
    if c.get("type") == "object" and "properties" in c:
        parts.append("an object: " + ", ".join(c["properties"]))
    if c.get("array"):
        parts.append("a list")
    if prop.get("default") not in (None, [], {}):
        parts.append(f"default {prop['default']}")
    return f"{name}" + (f" ({'; '.join(parts)})" if parts else "")


def param_schema(name: str, prop: dict[str, Any]) -> dict[str, Any]:
    """The Param's schema of one top-level spec field."""
    schema: dict[str, Any] = {k: v for k, v in prop.items() if k not in _DROP}
    schema["title"] = title_of(name)
    if "properties" in prop:
        fields = "; ".join(describe_field(k, v) for k, v in prop["properties"].items())
        schema["description"] = f"{prop.get('description', '').rstrip('.')}. Fields: {fields}."
    return schema


def spec_params() -> dict[str, Param]:
    schema = json_schema()
    defaults = example_spec().model_dump(mode="json")
    return {name: Param(defaults[name], **param_schema(name, prop))
            for name, prop in schema["properties"].items()}
