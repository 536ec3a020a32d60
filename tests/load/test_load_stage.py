"""The DAG's load stage drives the spec's new arrival processes at a real server.

The server is the project's reference server standing in as an already-started endpoint
(what the serve stage would have written); the load stage itself runs unchanged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferbench.paths import RunDir
from inferbench.spec import example_spec, parse_spec
from inferbench.stages import load
from inferbench.stages.common import LoadPoint, LoadSummary, StageContext


@pytest.mark.parametrize("workload", [
    {"arrival": "gamma", "rate_rps": 80, "burstiness": 4, "seed": 2},
    {"arrival": "step", "rate_rps": 40, "peak_rate_rps": 120, "change_at_s": 1.0, "seed": 3},
])
def test_load_stage_runs_open_loop_processes(reference_server, tmp_path, workload):
    server = reference_server(1.0, 4)
    data = example_spec().model_dump(mode="json")
    data.update(platforms=["onnxruntime"], batch_sizes=[1], workload=workload, warmup_s=0.3,
                min_duration_s=2, min_requests=20, max_duration_s=10, max_late_send_pct=100)
    data["model"]["num_outputs"] = 1  # the reference server answers one value per sample
    spec = parse_spec(data)
    run_dir = RunDir("t", tmp_path).ensure()
    run_dir.spec_file.write_text(json.dumps(data))
    run_dir.endpoint_file("onnxruntime").write_text(json.dumps({
        "status": "ready", "platform": "onnxruntime", "url": server.url,
        "model_name": "reference", "pid": server.process.pid}))
    ctx = StageContext("t", spec, run_dir, "postgresql://unused")
    out = load.run(ctx, "onnxruntime")
    assert out["points"][0]["stop_reason"] == "min_reached"
    assert set(out["points"][0]) == set(load.PointBrief.__annotations__)
    summary = json.loads(run_dir.load_file("onnxruntime").read_text())
    # load.json is what its types document (the error key only when a point failed)
    assert set(summary) == set(LoadSummary.__annotations__) - {"error"}
    point = summary["points"][0]
    assert set(point) == set(LoadPoint.__annotations__)
    assert point["arrival"] == workload["arrival"] and point["complete"]
    records = np.load(run_dir.config_dir("onnxruntime", 0) / "points" / "0.npz")
    assert set(records["status"].tolist()) == {200}
    offsets_s = (records["scheduled_ns"] - point["started_ns"]) / 1e9
    if workload["arrival"] == "step":
        # 40 req/s for the first second, 120 after: the second half is much denser.
        before = (offsets_s < 1.0).sum()
        after = ((offsets_s >= 1.0) & (offsets_s < 2.0)).sum()
        assert after > 1.8 * before
    else:
        gaps = np.diff(offsets_s)
        assert gaps.var() / gaps.mean() ** 2 > 2  # bursty: CV^2 far above Poisson's 1
