"""The DAG's Params, generated from the BenchmarkSpec JSON schema.

The trigger form thus shows every spec field with its description, enum choices and
bounds, and Airflow rejects a bad value before any task runs. The demo spec gives the
defaults, so an unattended trigger with no conf runs the demo benchmark.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from inferbench.spec import example_spec, json_schema

# Keys pydantic emits that are annotations, not constraints, for Airflow's form.
_DROP = {"default"}


def spec_params() -> dict[str, Param]:
    schema = json_schema()
    defaults = example_spec().model_dump(mode="json")
    params = {}
    for name, prop in schema["properties"].items():
        field_schema: dict[str, Any] = {k: v for k, v in prop.items() if k not in _DROP}
        field_schema.setdefault("title", name)
        params[name] = Param(defaults[name], **field_schema)
    return params
