"""Each verdict rule on its own, the VALID wording, meets_slo and run verdicts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from analysis.summary import PointSummary, summarize_point
from analysis.verdict import judge_point, judge_run

GOOD = PointSummary(
    n_ok=480,
    n_failed=0,
    duration_s=12.1,
    throughput_rps=480 / 12.1,
    late_send_pct=0.0,
    latency_ms={
        "mean": 40.0,
        "p50": 38.0,
        "p90": 60.0,
        "p95": 70.0,
        "p99": 99.0,
        "p99.9": 120.0,
        "max": 130.0,
    },
    p99_ci_ms=(90.0, 110.0),
)
RULES = {
    "complete": True,
    "stop_reason": "max_duration_s",
    "min_duration_s": 10.0,
    "min_requests": 200,
    "slo_percentile": 99.0,
    "slo_latency_ms": 100.0,
    "open_loop": True,
}


def judge(summary=GOOD, **overrides):
    return judge_point(summary, **{**RULES, **overrides})


def test_valid_point_lists_the_checks_passed():
    assert judge() == (
        "VALID",
        [
            "duration 12.1 s >= 10.0 s",
            "480 requests >= 200",
            "late sends 0.0 % <= 1 %",
            "failed 0.0 % <= 1 %",
        ],
        True,
    )


def test_cut_short():
    assert judge(complete=False, stop_reason="error")[:2] == (
        "INVALID",
        ["point was cut short (stop_reason: error)"],
    )


def test_too_short():
    s = dataclasses.replace(GOOD, duration_s=8.0)
    assert judge(s)[:2] == (
        "INVALID",
        ["ran 8.0 s < min_duration_s 10.0 (stopped by max_duration_s)"],
    )
    # 9.96 s must not read "ran 10.0 s < 10.0".
    assert judge(dataclasses.replace(GOOD, duration_s=9.96))[1] == [
        "ran 9.96 s < min_duration_s 10.0 (stopped by max_duration_s)"
    ]


def test_too_few_requests():
    s = dataclasses.replace(GOOD, n_ok=150)
    assert judge(s)[:2] == ("INVALID", ["only 150 ok requests < min_requests 200"])


def test_load_generator_fell_behind():
    s = dataclasses.replace(GOOD, late_send_pct=2.3)
    assert judge(s)[:2] == (
        "INVALID",
        ["2.3 % of requests were sent more than 1 ms late (> 1 %): the load generator fell behind"],
    )
    assert judge(dataclasses.replace(GOOD, late_send_pct=1.04))[1][0].startswith("1.04 % ")
    # Closed loop: the rule does not apply.
    verdict, reasons, _ = judge(s, open_loop=False)
    assert verdict == "VALID" and "late sends not applicable (closed loop)" in reasons


def test_too_many_failures():
    s = dataclasses.replace(GOOD, n_ok=985, n_failed=15)
    assert judge(s)[:2] == ("INVALID", ["1.5 % of requests failed (> 1 %)"])
    # Exactly at the limit is still fine.
    assert judge(dataclasses.replace(GOOD, n_ok=990, n_failed=10))[0] == "VALID"


def test_several_failures_are_all_reported():
    s = dataclasses.replace(GOOD, duration_s=3.0, n_ok=100, n_failed=10)
    verdict, reasons, _ = judge(s, complete=False, stop_reason="error")
    assert verdict == "INVALID" and len(reasons) == 4


def test_meets_slo():
    assert judge(slo_latency_ms=99.0)[2] is True  # p99 == 99.0 meets a 99 ms SLO
    assert judge(slo_latency_ms=98.9)[2] is False
    assert judge(slo_percentile=50.0, slo_latency_ms=38.0)[2] is True
    # A validity problem does not hide the SLO answer.
    assert judge(complete=False)[2] is True


def test_meets_slo_at_a_non_standard_percentile():
    n = 300
    sched = np.zeros(n, dtype=np.int64)
    done = np.arange(1, n + 1, dtype=np.int64) * 1_000_000  # 1..300 ms
    s = summarize_point(
        sched, sched, done, np.full(n, 200), started_ns=0, ended_ns=20 * 10**9, open_loop=True
    )
    # p97.5 of 1..300 is rank ceil(292.5) = 293.
    assert judge(s, slo_percentile=97.5, slo_latency_ms=293.0)[2] is True
    assert judge(s, slo_percentile=97.5, slo_latency_ms=292.0)[2] is False


def test_slo_percentile_from_a_latency_array():
    # A summary rebuilt without its latencies: the caller passes them (any order).
    s = dataclasses.replace(GOOD, n_ok=300)
    lat = np.arange(300, 0, -1, dtype=float)  # 300..1 ms
    assert judge(s, slo_percentile=97.5, slo_latency_ms=293.0, latencies_ms=lat)[2] is True
    assert judge(s, slo_percentile=97.5, slo_latency_ms=292.0, latencies_ms=lat)[2] is False
    with pytest.raises(ValueError, match="97.5"):
        judge(s, slo_percentile=97.5)


def test_no_ok_request():
    s = dataclasses.replace(GOOD, n_ok=0, n_failed=5, latency_ms=dict.fromkeys(GOOD.latency_ms))
    verdict, reasons, meets = judge(s, min_requests=0, max_failed_pct=100.0)
    assert (verdict, reasons, meets) == (
        "INVALID",
        ["no request completed successfully (5 failed)"],
        None,
    )


def test_run_verdict():
    assert judge_run([("a", "VALID"), ("b", "VALID")], []) == (
        "VALID",
        ["all 2 points are VALID and no platform failed"],
    )
    assert judge_run([("onnx/b1", "VALID"), ("triton/b8", "INVALID")], ["torchserve"]) == (
        "INVALID",
        ["point triton/b8 is INVALID", "platform torchserve failed"],
    )
    assert judge_run([("a", "VALID")], []) == (
        "VALID",
        ["the only point is VALID and no platform failed"],
    )
    assert judge_run([("a", "VALID")], ["x"])[0] == "INVALID"
    assert judge_run([], []) == ("INVALID", ["no points were measured"])


@pytest.mark.parametrize("verdict", ["INVALID", "", None])
def test_run_verdict_not_valid_point(verdict):
    assert judge_run([("p", verdict)], [])[0] == "INVALID"
