"""How the docker runtime finds what a killed attempt left (no daemon needed; the removal
itself runs for real in tests/test_docker_runtime.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inferbench.leftover_containers import serves, stage_container_name

DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def test_a_stage_container_name_is_a_docker_name_unique_to_its_stage():
    home = Path("/srv/inferbench")
    name = stage_container_name(home, "manual__2026-01-01T00:00:00+00:00", "measure",
                                "onnxruntime", 2)
    assert DOCKER_NAME.fullmatch(name) and name.startswith("inferbench-measure-onnxruntime-2-")
    assert name == stage_container_name(home, "manual__2026-01-01T00:00:00+00:00", "measure",
                                        "onnxruntime", 2)  # the retry finds it
    others = {stage_container_name(*args) for args in [
        (Path("/other/home"), "manual__2026-01-01T00:00:00+00:00", "measure", "onnxruntime", 2),
        (home, "manual__2026-01-01T00:00:00_00:00", "measure", "onnxruntime", 2),
        (home, "manual__2026-01-01T00:00:00+00:00", "measure", "onnxruntime", 1),
        (home, "manual__2026-01-01T00:00:00+00:00", "measure", "triton", 2),
        (home, "manual__2026-01-01T00:00:00+00:00", "collect", "onnxruntime", 2),
    ]}
    assert name not in others and len(others) == 5
    assert DOCKER_NAME.fullmatch(stage_container_name(home, "r", "generate", None, None))


@pytest.mark.parametrize(("role", "config", "removed"), [
    ("server:onnxruntime:0", None, True), ("server:onnxruntime:12", None, True),
    ("server:onnxruntime:0", 0, True), ("server:onnxruntime:1", 0, False),
    ("server:onnxruntime:10", 1, False), ("server:triton:0", None, False),
    ("server:onnxruntime-gpu:0", None, False), ("measure", None, False),
])
def test_after_a_stop_only_that_platforms_and_configurations_servers_go(role, config,
                                                                        removed):
    assert serves(role, "onnxruntime", config) is removed
