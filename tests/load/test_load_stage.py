"""The DAG's load stage drives the spec's new arrival processes at a real server.

The server is the project's reference server standing in as an already-started endpoint
(what the serve stage would have written); the load stage itself runs unchanged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferbench.stages import load
from inferbench.stages.collect import PROCESSING_KEYS, SERVER_STAY_KEYS, TRANSMIT_KEYS
from inferbench.stages.common import LoadPoint, LoadSummary


@pytest.mark.parametrize("workload", [
    {"arrival": "gamma", "rate_rps": 80, "burstiness": 4, "seed": 2},
    {"arrival": "step", "rate_rps": 40, "peak_rate_rps": 120, "change_at_s": 1.0, "seed": 3},
])
def test_load_stage_runs_open_loop_processes(reference_server, load_stage_on, workload):
    server = reference_server(1.0, 4)
    out, run_dir = load_stage_on(server, workload=workload, warmup_s=0.3, min_duration_s=2,
                                 min_requests=20, max_duration_s=10, max_late_send_pct=100)
    assert out["points"][0]["stop_reason"] == "min_reached"
    assert set(out["points"][0]) == set(load.PointBrief.__annotations__)
    summary = json.loads(run_dir.load_file("onnxruntime").read_text())
    # load.json is what its types document (the error key only when a point failed; no
    # prediction for arrivals that are not Poisson; no link, and no CPUs pinned)
    assert set(summary) == set(LoadSummary.__annotations__) - {
        "error", "predictions", "network", "load_cpus"}
    point = summary["points"][0]
    # every documented key but those of a link, a pipeline, and a server that times each
    # request's whole stay (the reference server does not)
    absent = {*TRANSMIT_KEYS, *PROCESSING_KEYS, *SERVER_STAY_KEYS}
    assert set(point) == set(LoadPoint.__annotations__) - absent
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


def run_load_stage(load_stage_on, server, **over) -> dict:
    """The load stage on the reference server with short points; returns load.json."""
    _, run_dir = load_stage_on(server, warmup_s=0.2, min_duration_s=1, min_requests=10,
                               max_duration_s=10, max_late_send_pct=100, **over)
    return json.loads(run_dir.load_file("onnxruntime").read_text())


def test_closed_loop_concurrency_list_is_one_point_per_rung(reference_server, load_stage_on):
    server = reference_server(5.0, 2)
    summary = run_load_stage(load_stage_on, server,
                             workload={"arrival": "closed_loop", "concurrency": [1, 2, 4]},
                             slo={"percentile": 99, "latency_ms": 500},
                             ladder={"settle_s": 0.1})
    points = summary["points"]
    assert [(p["concurrency"], p["target_rate_rps"], p["rung"], p["ladder_phase"])
            for p in points] == [(1, None, 0, "list"), (2, None, 1, "list"), (4, None, 2, "list")]
    assert all(p["rung_holds"] and p["rung_sent_rps"] is None for p in points)
    (family,) = summary["ladders"]
    assert (family["mode"], family["end"], family["last_good"], family["points"]) == (
        "list", "list_end", 4.0, [0, 1, 2])
    # Two workers of 5 ms: one client gets ~200 req/s at most, two clients twice that.
    assert points[1]["rung_achieved_rps"] > 1.5 * points[0]["rung_achieved_rps"]


def test_rate_list_stops_at_the_first_rung_that_fails(reference_server, load_stage_on):
    server = reference_server(10.0, 1)  # 100 req/s at most
    summary = run_load_stage(load_stage_on, server,
                             workload={"arrival": "poisson", "rate_rps": [20, 300, 400],
                                       "seed": 4},
                             slo={"percentile": 99, "latency_ms": 5000},
                             ladder={"settle_s": 0.1})
    points = summary["points"]
    assert [p["target_rate_rps"] for p in points] == [20, 300]
    assert points[0]["rung_holds"] and not points[1]["rung_holds"]
    assert points[1]["rung_reason"].startswith("achieved")
    (family,) = summary["ladders"]
    assert (family["end"], family["last_good"], family["first_bad"]) == ("list_failed", 20, 300)


def test_drain_waits_out_requests_the_client_gave_up_on(reference_server):
    import threading
    import urllib.request

    from inferbench.load.protocols import Target, get_protocol

    server = reference_server(200.0, 1)
    protocol = get_protocol("kserve-v2")
    request = protocol.build(Target(server.url, "reference", "INPUT0", "OUTPUT0"),
                             np.zeros((1, 4), np.float32))

    def give_up() -> None:  # sent, then abandoned after 50 ms: it stays in the queue
        req = urllib.request.Request(request.url, data=request.body, headers=request.headers)
        try:
            urllib.request.urlopen(req, timeout=0.05)
        except OSError:
            pass

    threads = [threading.Thread(target=give_up) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 5 x 200 ms queued on one worker: probes with a 0.3 s timeout fail until it is gone.
    waited = load.drain(protocol, request, timeout_s=0.3)
    assert 0.6 < waited < 5
    log = server.log()
    assert len(log["seq"]) >= 6 and log["completion_ns"][-1] == log["completion_ns"].max()
