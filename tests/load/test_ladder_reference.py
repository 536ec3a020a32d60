"""The load stage's capacity search against the reference server, an M/D/c queue whose
capacity is known by construction (c workers of a deterministic service time D: c/D req/s).

Two SLOs:
- generous: only the achieved-rate rule can stop the climb, so the search ends near c/D.
  What the code guarantees is on the rate each rung actually sent: a rung holds only if the
  server achieved >= 95 % of it, and c workers cannot complete more than c/D per second,
  so no rung that held sent more than (c/D) / 0.95; and rungs up to 0.8 c/D hold, so the
  search ends at >= 0.8 c/D less its precision.
- tight: the p99 rule stops it. The capacity found must agree with the M/D/c p99 crossing,
  simulated here (the c-server form of Lindley's recursion on Poisson arrivals), within the
  search precision plus the spread of a 3 s rung's p99 (about 4 requests lie above it), which
  the test simulates too rather than assumes. And, rung by rung with no statistics at all:
  the same recursion on the arrivals the server logged gives each request's time in the
  queue, which the client's latency (from the scheduled send) can only exceed; so a rung
  whose own queue broke the SLO never holds.

A loaded host only ever makes rungs fail sooner (late, bunched sends; slow answers), so the
upper bounds hold whatever the host does. The lower bounds are what a quiet host gives: a
rung below them may fail only where the server's log shows the host at work (the rung's
requests reached the server > 5 ms behind their schedule at p99, or the client saw > 3 ms
more than the queue at p99), and the test says so.
"""

from __future__ import annotations

import heapq
import json
import math

import numpy as np
import pytest

from analysis.capacity import MIN_ACHIEVED_RATIO
from analysis.percentiles import exact_percentile
from inferbench.load.ladder import judge_records
from inferbench.paths import RunDir

pytestmark = pytest.mark.integration

RUNG_S = 3.0      # measured part of a rung
SETTLE_S = 0.5    # warm-up of the first rung, settle of the later ones
PRECISION = 0.10


def run_ladder(reference_server, load_stage_on, *, service_ms: float, workers: int,
               start_rps: float, slo_ms: float, predict: bool = False):
    """The load stage's search on a fresh reference server: (load.json, run dir, server).
    Unguided unless `predict` (the guided search has its own test); the stage's
    configuration declares the server's workers as its instances."""
    server = reference_server(service_ms, workers)
    out, run_dir = load_stage_on(
        server, server={"instance_count": workers}, warmup_s=SETTLE_S,
        min_duration_s=RUNG_S, min_requests=50, max_duration_s=20, max_late_send_pct=100,
        request_timeout_s=10,
        workload={"arrival": "poisson", "rate_rps": start_rps, "seed": 11},
        slo={"percentile": 99, "latency_ms": slo_ms},
        ladder={"mode": "search", "growth": 2, "precision_pct": PRECISION * 100,
                "max_rungs": 10, "settle_s": SETTLE_S, "predict": predict, "profile_s": 1.5})
    summary = json.loads(run_dir.load_file("onnxruntime").read_text())
    assert out["ladders"] == summary["ladders"]
    return summary, run_dir, server


def check_rungs_are_points(summary: dict, run_dir: RunDir, slo_ms: float,
                           guided: bool = False) -> list[dict]:
    """Every rung is a stored point with its records, and the stage's judgement of it is
    what its records say. A guided search's first step is within the precision, so when it
    brackets the capacity the search ends there, before any bisection."""
    (family,) = summary["ladders"]
    points = summary["points"]
    assert family["mode"] == "search" and family["points"] == [p["point"] for p in points]
    assert [p["point"] for p in points] == [p["rung"] for p in points] == \
        list(range(len(points))) and family["rungs"] == len(points)
    # A rung may be measured again when it was not valid (phase "repeat"), anywhere.
    phases = [p["ladder_phase"] for p in points if p["ladder_phase"] != "repeat"]
    first_step_bracketed = guided and phases == ["geometric", "geometric"]
    assert phases[0] == "geometric" and ("bisect" in phases or first_step_bracketed)
    assert phases == sorted(phases, key=["geometric", "bisect"].index)
    for p in points:
        arrays = dict(np.load(run_dir.config_dir("onnxruntime", 0) / "points"
                              / f"{p['point']}.npz"))
        assert len(arrays["status"]) == p["n_requests"]
        judged = judge_records(arrays, started_ns=p["started_ns"], ended_ns=p["ended_ns"],
                               offered=p["target_rate_rps"], open_loop=True,
                               slo_percentile=99, slo_ms=slo_ms)
        # It holds when its records meet the SLO rule and it is a valid measurement.
        if p["rung_holds"]:
            assert judged.holds and p["rung_reason"] is None
        else:
            assert p["rung_reason"].endswith(judged.reason) if judged.reason else \
                p["rung_reason"].startswith("INVALID: ")
        p["arrays"] = arrays
    held = [p["target_rate_rps"] for p in points if p["rung_holds"]]
    assert family["last_good"] == max(held)
    assert family["first_bad"] == min(p["target_rate_rps"] for p in points
                                      if not p["rung_holds"] and p["target_rate_rps"] > max(held))
    assert family["end"] == "precision" and not family["bound"]
    assert (family["first_bad"] - family["last_good"]) / family["last_good"] <= PRECISION
    return points


# What the host may add before a rung's failure is put down to it (see the docstring).
LATE_ARRIVAL_MS = 5.0
CLIENT_OVER_QUEUE_MS = 3.0


def server_view(points: list[dict], server, service_s: float, workers: int) -> None:
    """Add to each rung what the server's log says about its requests: the p99 of their
    time in the M/D/c queue (the recursion on the logged arrivals, which must be the queue
    the server kept), and how far behind their schedule they reached the server."""
    log = server.log()
    sojourn_s = mdc_sojourn_s((log["arrival_ns"] - log["arrival_ns"][0]) / 1e9, service_s,
                              workers)
    assert np.allclose(sojourn_s * 1e9, log["completion_ns"] - log["arrival_ns"], atol=1e3)
    for p in points:
        mine = (log["arrival_ns"] >= p["started_ns"]) & (log["arrival_ns"] <= p["ended_ns"])
        assert mine.sum() == p["n_requests"]  # the rung's requests, and only those
        p["queue_p99_ms"] = p99_ms(sojourn_s[mine])
        behind_ms = (np.sort(log["arrival_ns"][mine])
                     - np.sort(p["arrays"]["scheduled_ns"])) / 1e6
        p["late_arrival_p99_ms"] = float(np.percentile(behind_ms, 99))
        p["host_at_work"] = (p["late_arrival_p99_ms"] > LATE_ARRIVAL_MS
                             or p["rung_latency_at_slo_ms"] - p["queue_p99_ms"]
                             > CLIENT_OVER_QUEUE_MS)


def holds_unless_host(p: dict) -> None:
    """A rung the theory says holds did, or the host is seen at work in its requests."""
    assert p["rung_holds"] or p["host_at_work"], (
        f"{p['target_rate_rps']} req/s failed ({p['rung_reason']}) with its requests "
        f"{p['late_arrival_p99_ms']:.1f} ms behind schedule at p99 and the client "
        f"{p['rung_latency_at_slo_ms'] - p['queue_p99_ms']:.1f} ms over the queue's p99")


def test_generous_slo_search_ends_at_the_servers_capacity(reference_server, load_stage_on, capsys):
    service_s, workers = 0.010, 2
    capacity = workers / service_s  # 200 req/s
    summary, run_dir, server = run_ladder(reference_server, load_stage_on,
                                          service_ms=1e3 * service_s, workers=workers,
                                          start_rps=60, slo_ms=2000)
    points = check_rungs_are_points(summary, run_dir, 2000)
    server_view(points, server, service_s, workers)
    assert [p["target_rate_rps"] for p in points[:3]] == [60, 120, 240]
    for p in points:
        window_s = (p["ended_ns"] - p["started_ns"]) / 1e9
        if p["rung_holds"]:
            # c workers complete at most c/D per second (+ the c in service at the start).
            assert p["rung_sent_rps"] <= (capacity + workers / window_s) / MIN_ACHIEVED_RATIO
        else:  # only the achieved-rate rule can fail a rung under this SLO
            assert p["rung_reason"].startswith("achieved"), p["rung_reason"]
        if p["target_rate_rps"] <= 0.8 * capacity:
            holds_unless_host(p)
    # Every rung up to 0.8 c/D held, so the first that failed is above it, and the search
    # ended within its precision of that.
    good = summary["ladders"][0]["last_good"]
    if all(p["rung_holds"] for p in points if p["target_rate_rps"] <= 0.8 * capacity):
        assert good >= 0.8 * capacity / (1 + PRECISION)
    # The nominal rate of the last rung that held is off what it sent by Poisson noise only
    # (4 standard deviations of a count of n).
    n = next(p["n_requests"] for p in points if p["target_rate_rps"] == good)
    assert good <= capacity / MIN_ACHIEVED_RATIO * (1 + 4 / math.sqrt(n)) + 1
    # The task log shows the search, one line per rung and its end.
    log = capsys.readouterr().out
    assert "b1 rung 0 (geometric): 60 req/s offered" in log
    assert log.count(" rung ") == len(points) and "b1 ladder ended (precision)" in log


# -- the tight SLO: the M/D/c p99 crossing ------------------------------------------------

def mdc_sojourn_s(arrivals_s: np.ndarray, service_s: float, workers: int) -> np.ndarray:
    """Time in system of each arrival (in order) of a FIFO queue with `workers` servers of a
    deterministic service time: each starts at its arrival or when the earliest worker is
    free, whichever is later (Lindley's recursion for c servers), starting empty."""
    free = [float("-inf")] * workers
    out = np.empty(len(arrivals_s))
    for i, a in enumerate(arrivals_s):
        start = max(a, heapq.heappop(free))
        heapq.heappush(free, start + service_s)
        out[i] = start + service_s - a
    return out


def p99_ms(sojourn_s: np.ndarray) -> float:
    return exact_percentile(sojourn_s * 1e3, 99)


def stationary_crossing_rps(service_s: float, workers: int, slo_ms: float) -> float:
    """The rate at which the long-run p99 of an M/D/c queue reaches the SLO. The same unit
    exponential gaps scaled by 1/rate make p99 rise monotonically with the rate, so it
    bisects cleanly."""
    gaps = np.random.default_rng(1).exponential(1.0, 60_000)
    low, high = 0.05 * workers / service_s, 0.999 * workers / service_s
    for _ in range(20):
        rate = (low + high) / 2
        arrivals = np.cumsum(gaps / rate)
        p99 = p99_ms(mdc_sojourn_s(arrivals, service_s, workers)[5_000:])  # past the start
        low, high = (rate, high) if p99 <= slo_ms else (low, rate)
    return (low + high) / 2


def rung_p99s_ms(rate: float, service_s: float, workers: int, reps: int,
                 seed: int) -> np.ndarray:
    """p99 of many simulated rungs shaped as the test's: an empty queue (the second of
    host-stall measurement before each rung lets it drain), SETTLE_S of warm-up at the
    rung's rate, then RUNG_S measured."""
    rng = np.random.default_rng(seed)
    out = np.empty(reps)
    for r in range(reps):
        arrivals = np.cumsum(rng.exponential(1 / rate, int(rate * (SETTLE_S + RUNG_S) * 1.3)
                                             + 50))
        measured = (arrivals >= SETTLE_S) & (arrivals < SETTLE_S + RUNG_S)
        out[r] = p99_ms(mdc_sojourn_s(arrivals, service_s, workers)[measured])
    return out


def test_tight_slo_search_ends_at_the_mdc_p99_crossing(reference_server, load_stage_on):
    service_s, workers, slo_ms = 0.020, 4, 40.0  # c/D = 200 req/s; SLO 2 D
    crossing = stationary_crossing_rps(service_s, workers, slo_ms)  # ~120 req/s
    # The noise margin, from 2000 simulated rungs of this shape at each end (stated here,
    # and checked on 400 more): at 72 req/s a rung's p99 is within the SLO less the client's
    # allowance in 99.5 % of rungs, at 172 req/s above the SLO in 99.9 %.
    low, high = 72.0, 172.0
    assert low < crossing < high
    allowance = slo_ms - CLIENT_OVER_QUEUE_MS
    assert np.mean(rung_p99s_ms(low, service_s, workers, 400, 1) <= allowance) >= 0.98
    assert np.mean(rung_p99s_ms(high, service_s, workers, 400, 2) > slo_ms) >= 0.98

    summary, run_dir, server = run_ladder(reference_server, load_stage_on,
                                          service_ms=1e3 * service_s, workers=workers,
                                          start_rps=40, slo_ms=slo_ms)
    points = check_rungs_are_points(summary, run_dir, slo_ms)
    server_view(points, server, service_s, workers)
    for p in points:
        # The client's latency runs from the scheduled send to the answer, around the time
        # the request spent in the server's queue: a rung whose own queue broke the SLO
        # failed, whatever the host did; one whose queue kept well within it held, unless
        # the host added more than the allowance.
        assert p["rung_latency_at_slo_ms"] >= p["queue_p99_ms"]
        if p["queue_p99_ms"] > slo_ms:
            assert not p["rung_holds"]
        if p["queue_p99_ms"] <= allowance and not p["host_at_work"]:
            assert p["rung_holds"], p["rung_reason"]
    # Against the theory: the last rung that held is below the band's top (a rung there
    # fails in 99.9 % of cases, and a busy host only makes it likelier) ...
    good = summary["ladders"][0]["last_good"]
    assert good <= high, (good, crossing)
    # ... and, since the search ended within its precision, at least the band's bottom less
    # the precision, unless a rung at or below the bottom failed: then its own queue's
    # spread (< 0.5 % of rungs, simulated above) or the host must show why.
    below = [p for p in points if p["target_rate_rps"] <= low and not p["rung_holds"]]
    for p in below:
        assert p["queue_p99_ms"] > allowance or p["host_at_work"], p
    if not below:
        assert good >= low / (1 + PRECISION), (good, crossing)


def model_idle_ms(predicted: dict) -> float:
    return predicted["model"]["idle_ms"]


def test_a_predicted_search_starts_at_the_predicted_crossing_and_confirms_it(
        reference_server, load_stage_on):
    service_s, workers, slo_ms = 0.020, 4, 40.0  # as above: the p99 crossing is ~120 req/s
    crossing = stationary_crossing_rps(service_s, workers, slo_ms)
    summary, run_dir, _ = run_ladder(reference_server, load_stage_on,
                                     service_ms=1e3 * service_s, workers=workers,
                                     start_rps=40, slo_ms=slo_ms, predict=True)
    (predicted,) = summary["predictions"]
    assert predicted["error"] is None and predicted["parallelism"] == workers
    # 1..c in flight, then c + 1 and c + 2 for the capacity (more while it still grows).
    # and the open-loop probes' levels first (-2 loaded near capacity, -1 loaded at half
    # of it, 0 idle arrivals; kept in order).
    in_flight = [lv["in_flight"] for lv in predicted["levels"]]
    assert in_flight[:workers + 5] == list(range(-2, workers + 3))
    assert model_idle_ms(predicted) > 0.9 * 1e3 * service_s
    model = predicted["model"]
    assert model["parallelism"] == workers
    assert model["capacity_rps"] == pytest.approx(workers / service_s, rel=0.1)
    assert 0.7 * crossing < predicted["slo_capacity_rps"] < 1.3 * crossing
    points = check_rungs_are_points(summary, run_dir, slo_ms, guided=True)
    assert points[0]["target_rate_rps"] == predicted["guided_start"]
    assert predicted["guided_start"] < predicted["slo_capacity_rps"]
    for p in points:
        assert p["predicted_mean_ms"] >= 1e3 * service_s
        assert p["predicted_p99_ms"] > p["predicted_mean_ms"]
    family = summary["ladders"][0]
    assert family["end"] == "precision"
    assert family["last_good"] <= crossing * 1.3 and family["first_bad"] >= crossing * 0.7
