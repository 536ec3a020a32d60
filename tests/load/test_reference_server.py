"""The M/D/c reference server honours its service time, queues FIFO and logs every request."""

from __future__ import annotations

import json
import urllib.request

import numpy as np

from inferbench.load import v2protocol
from inferbench.load.runner import Request, StopRule, run_point
from inferbench.servers.reference_server import QueueModel


def v2_request(url: str, batch: int = 1) -> Request:
    body, headers = v2protocol.encode_request({"INPUT0": np.zeros((batch, 4), np.float32)},
                                              "OUTPUT0")
    return Request(f"{url}/v2/models/reference/infer", body, headers)


def test_queue_model_is_fifo_md_c():
    q = QueueModel(service_ns=10, workers=2)
    # Three arrivals at t=0 on two workers: the third waits for the first free worker.
    assert [q.admit(0)[1:] for _ in range(3)] == [(0, 10), (0, 10), (10, 20)]
    assert q.admit(25)[1:] == (25, 35)  # an idle worker starts at once


def test_queue_model_stall_delays_work_once():
    q = QueueModel(service_ns=10, workers=1, stall_at_ns=100, stall_ns=500)
    assert q.admit(0)[1:] == (0, 10)
    assert q.admit(150)[1:] == (600, 610)  # the stall began at 100 and lasted 500
    assert q.admit(700)[1:] == (700, 710)  # and only once


def test_closed_loop_service_time_is_honoured_and_log_is_complete(reference_server):
    server = reference_server(20.0, 1)
    records = run_point([v2_request(server.url)], concurrency=1, seed=0, warmup_s=0,
                        rule=StopRule(2.0, 40, 20.0), request_timeout_s=5)
    a = records.arrays()
    assert set(a["status"].tolist()) == {200}
    latency_ms = (a["done_ns"] - a["scheduled_ns"]) / 1e6
    # One client, one worker: no queue, so every answer takes the service time plus the
    # round trip; never less (the server cannot answer early).
    assert latency_ms.min() >= 20.0
    assert np.median(latency_ms) < 25.0
    log = server.log()
    assert len(log["seq"]) == len(records)
    assert log["seq"].tolist() == list(range(1, len(records) + 1))
    assert np.all(log["completion_ns"] - log["start_ns"] == 20_000_000)
    # Closed loop with one client: each request starts as it arrives.
    assert np.all(log["start_ns"] == log["arrival_ns"])
    lateness_ms = (log["written_ns"] - log["completion_ns"]) / 1e6
    assert np.all(lateness_ms >= 0) and np.median(lateness_ms) < 1.0


def test_workers_serve_in_parallel(reference_server):
    server = reference_server(50.0, 4)
    records = run_point([v2_request(server.url)], concurrency=4, seed=0, warmup_s=0,
                        rule=StopRule(1.0, 20, 20.0), request_timeout_s=5)
    throughput = len(records) / ((records.ended_ns - records.started_ns) / 1e9)
    # 4 workers x 20 req/s each: far more than one worker's 20 req/s.
    assert throughput > 50, throughput


def test_json_and_other_routes(reference_server):
    server = reference_server(1.0, 1)
    body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [3, 4], "datatype": "FP32",
                                   "data": [0.0] * 12}]}).encode()
    req = urllib.request.Request(f"{server.url}/v2/models/reference/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(req, timeout=5).read())
    assert answer["outputs"][0]["shape"] == [3, 1]
    req = urllib.request.Request(f"{server.url}/v1/models/reference:predict",
                                 data=b'{"instances": [[1], [2]]}',
                                 headers={"Content-Type": "application/json"})
    assert len(json.loads(urllib.request.urlopen(req, timeout=5).read())["predictions"]) == 2
    assert len(server.log()["seq"]) == 2
    server.clear_log()
    assert len(server.log()["seq"]) == 0
