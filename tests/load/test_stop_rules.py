"""Stop rules: min duration AND min count, the max cap, window stability, trace end."""

from __future__ import annotations

import numpy as np

from inferbench.load import stability
from inferbench.load.arrivals import Schedule
from inferbench.load.runner import StopRule, run_point
from tests.load.test_reference_server import v2_request


def test_steady_windows_are_stable():
    rng = np.random.default_rng(1)
    done = np.sort(rng.uniform(0, 30e9, 30_000)).astype(np.int64)
    lat = rng.exponential(10, done.size)
    ws = stability.windows(done, lat, end_ns=30_000_000_000, window_s=10, n=3)
    assert [w.count for w in ws] == [int(((done >= k * 1e10) & (done < (k + 1) * 1e10)).sum())
                                     for k in range(3)]
    assert stability.judge(ws, 10.0) == (True, [])


def test_falling_throughput_is_unstable():
    # 1000, 800, 600 completions per 10 s window: a server falling behind.
    done = np.concatenate([np.linspace(k * 1e10, (k + 1) * 1e10, n, endpoint=False)
                           for k, n in enumerate((1000, 800, 600))]).astype(np.int64)
    ws = stability.windows(done, np.full(done.size, 5.0), 30_000_000_000, 10, 3)
    stable, reasons = stability.judge(ws, 10.0)
    assert not stable and "throughput of the last 3 windows varies by 50.0 %" in reasons[0]


def test_growing_p99_is_unstable_but_noise_is_not():
    rng = np.random.default_rng(2)
    done = np.linspace(0, 3e10, 6000, endpoint=False).astype(np.int64)
    growing = rng.exponential(10, 6000) * np.repeat([1.0, 1.5, 2.0], 2000)
    stable, reasons = stability.judge(stability.windows(done, growing, 30_000_000_000, 10, 3),
                                      10.0)
    assert not stable and reasons[0].startswith("p99 of the last 3 windows varies by")
    # 150 requests per window: p99s differ by > 10 % by chance, but within their intervals.
    few = np.linspace(0, 3e10, 450, endpoint=False).astype(np.int64)
    ws = stability.windows(few, rng.exponential(10, 450), 30_000_000_000, 10, 3)
    assert stability.judge(ws, 10.0)[0]


def test_min_count_keeps_the_point_running_past_min_duration(reference_server):
    server = reference_server(1.0, 1)
    # 100 req/s for 0.5 s would be ~50 requests: the count rule asks for 150.
    records = run_point([v2_request(server.url)], rate_rps=100, seed=1, warmup_s=0,
                        rule=StopRule(0.5, 150, 20.0), request_timeout_s=5)
    assert records.complete and records.stop_reason == "min_reached"
    assert len(records) >= 150
    assert (records.ended_ns - records.started_ns) / 1e9 > 1.2


def test_max_duration_caps_an_unmet_rule(reference_server):
    server = reference_server(1.0, 1)
    records = run_point([v2_request(server.url)], rate_rps=50, seed=1, warmup_s=0,
                        rule=StopRule(0.5, 10_000, 1.5), request_timeout_s=5)
    assert not records.complete and records.stop_reason == "max_duration"
    assert 1.5 <= (records.ended_ns - records.started_ns) / 1e9 < 3.0


def test_a_stall_keeps_windows_unstable_until_the_cap(reference_server):
    # The server stalls 500 ms, 1.2 s in: the window holding the stall has a much higher
    # p99 than the others, so the windows never agree within the 3 s cap.
    server = reference_server(2.0, 1, "--stall-at-s", "1.2", "--stall-ms", "500")
    records = run_point([v2_request(server.url)], rate_rps=200, seed=3, warmup_s=0,
                        rule=StopRule(1.0, 10, 3.0, stability_windows=3, window_s=1.0),
                        request_timeout_s=5)
    assert records.stop_reason == "max_duration_unstable" and not records.complete
    assert records.stable is False
    assert any("p99" in r for r in records.stability_reasons)


def test_stable_load_stops_on_stability(reference_server):
    server = reference_server(1.0, 1)
    records = run_point([v2_request(server.url)], rate_rps=200, seed=4, warmup_s=0.3,
                        rule=StopRule(1.0, 10, 20.0, stability_windows=3, window_s=1.0),
                        request_timeout_s=5)
    assert records.stop_reason == "stable" and records.complete and records.stable


def test_trace_end_stops_the_point(reference_server):
    server = reference_server(1.0, 1)
    offsets = [int(i * 10e6) for i in range(60)]  # 60 sends, 10 ms apart

    def schedule(seed: int) -> Schedule:
        return Schedule(iter(offsets), iter([0, 1] * 30), play_to_end=True)

    records = run_point([v2_request(server.url), v2_request(server.url, batch=2)],
                        schedule=schedule, seed=0, warmup_s=0,
                        rule=StopRule(0.3, 50, 10.0), request_timeout_s=5)
    assert records.stop_reason == "schedule_end" and records.complete and len(records) == 60
    a = records.arrays()
    assert np.array_equal(a["scheduled_ns"] - records.started_ns, offsets)
    # Payload ids chose the request: batch 1 and batch 2 bodies alternate.
    assert a["bytes_sent"][0] != a["bytes_sent"][1] and a["bytes_sent"][0] == a["bytes_sent"][2]


def test_a_server_that_falls_behind_gives_failed_requests_not_a_crash(reference_server,
                                                                      monkeypatch):
    # 100 ms per request on one worker at 200 req/s: connections pile up until the pool's
    # limit (lowered here from the 900 that select() allows); the excess is recorded.
    monkeypatch.setattr("inferbench.load.http.MAX_CONNECTIONS", 20)
    server = reference_server(100.0, 1)
    records = run_point([v2_request(server.url)], rate_rps=200, seed=1, warmup_s=0,
                        rule=StopRule(1.0, 0, 1.0), request_timeout_s=1.5)
    status = records.arrays()["status"]
    assert (status == 0).sum() > 100 and (status == 200).sum() >= 5


def test_a_burst_of_new_connections_stays_within_the_pool_limit():
    """Connections still being opened count toward the limit: 50 sends that all find the
    pool empty at once open 10 connections, not 50 (select() caps descriptors at 1024)."""
    import asyncio
    import socket

    from inferbench.load.http import ConnectionPool

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)  # accepts in the kernel; never answers: connections stay busy

    async def burst():
        pool = ConnectionPool("127.0.0.1", listener.getsockname()[1], lambda: 0,
                              max_connections=10)
        results = await asyncio.gather(*(pool.acquire() for _ in range(50)),
                                       return_exceptions=True)
        pool.close()
        return results

    try:
        results = asyncio.run(burst())
    finally:
        listener.close()
    refused = [r for r in results if isinstance(r, ConnectionRefusedError)]
    assert len(results) - len(refused) == 10 and len(refused) == 40


def test_no_socket_beyond_what_select_can_watch(reference_server, monkeypatch):
    """A connection whose descriptor select() could not watch is refused (status 0), not
    handed to the event loop, which would crash the whole point."""
    import os

    server = reference_server(100.0, 1)
    limit = max(int(fd) for fd in os.listdir("/proc/self/fd")) + 8
    monkeypatch.setattr("inferbench.load.http.SELECT_FD_LIMIT", limit)
    records = run_point([v2_request(server.url)], rate_rps=200, seed=2, warmup_s=0,
                        rule=StopRule(1.0, 0, 1.0), request_timeout_s=1.5)
    status = records.arrays()["status"]
    assert (status == 0).sum() > 100 and (status == 200).sum() >= 3


def test_a_closed_loop_on_a_dead_server_backs_off_instead_of_spinning():
    """Nothing listens on the port (a server that died): every client's connect is refused
    at once. Each client waits (1 ms doubling to 0.1 s) before its next try, so one second
    costs a few dozen failures per client, all recorded as failed, not a spin of hundreds
    of thousands."""
    import socket

    from inferbench.load.runner import Request

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # the port is free now: connections to it are refused
    records = run_point([Request(f"http://127.0.0.1:{port}/v2/models/m/infer", b"{}", {})],
                        concurrency=4, seed=0, warmup_s=0, rule=StopRule(1.0, 0, 2.0),
                        request_timeout_s=1.0)
    status = records.arrays()["status"]
    # Per client: 7 doubling waits (127 ms), then 0.1 s each: under 20 in the second.
    assert 4 <= status.size <= 4 * 20
    assert (status == 0).all()
