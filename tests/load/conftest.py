"""The reference server (a real process on a real socket) for load-generator tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from inferbench.paths import RunDir
from inferbench.servers.reference_server import ReferenceServerProcess


@pytest.fixture
def reference_server() -> Iterator[Callable[..., ReferenceServerProcess]]:
    """Factory: reference_server(service_ms=..., workers=..., extra args), stopped after."""
    started: list[ReferenceServerProcess] = []

    def start(service_ms: float = 5.0, workers: int = 1, *extra: str) -> ReferenceServerProcess:
        server = ReferenceServerProcess(service_ms, workers, *extra, ready_timeout_s=20)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def load_stage_on(tmp_path: Path) -> Callable[..., tuple[dict, RunDir]]:
    """Runs the load stage with the reference server standing in as onnxruntime's ready
    endpoint: load_stage_on(endpoint, **spec fields) -> (the stage's result, the run dir). The
    spec is the example spec with one batch size of 1 and the given fields."""
    from inferbench.spec import example_spec, parse_spec
    from inferbench.stages import load
    from inferbench.stages.common import StageContext

    def run(endpoint: ReferenceServerProcess, **fields: Any) -> tuple[dict, RunDir]:
        data = example_spec().model_dump(mode="json")
        data.update(platforms=["onnxruntime"], batch_sizes=[1], **fields)
        data["model"]["num_outputs"] = 1  # the reference server answers one value per sample
        run_dir = RunDir("t", tmp_path).ensure()
        run_dir.spec_file.write_text(json.dumps(data))
        run_dir.endpoint_file("onnxruntime").write_text(json.dumps({
            "status": "ready", "platform": "onnxruntime", "url": endpoint.url,
            "model_name": "reference", "pid": endpoint.process.pid}))
        ctx = StageContext("t", parse_spec(data), run_dir, "postgresql://unused")
        return load.run(ctx, "onnxruntime"), run_dir

    return run
