"""summarize_point on hand-made timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.summary import PointSummary, summarize_point

MS = 1_000_000


def _point():
    """102 requests, one every 10 ms: 100 ok with latencies 1..100 ms, 2 failed, 3 late."""
    n = 102
    sched = np.arange(n, dtype=np.int64) * 10 * MS
    sent = sched.copy()
    sent[[5, 6, 7]] += 2 * MS  # late (> 1 ms)
    sent[8] += 1 * MS  # exactly 1 ms: not late (the rule is strictly greater)
    latency = np.concatenate([np.arange(1, 101), [0, 0]]) * MS
    done = sched + latency
    status = np.full(n, 200)
    status[100] = 500  # HTTP error
    done[101] = -1  # never completed (status 200 must not make it ok)
    return sched, sent, done, status


def test_counts_throughput_and_exact_latencies():
    s = summarize_point(*_point(), started_ns=0, ended_ns=2_000_000_000, open_loop=True)
    assert (s.n_ok, s.n_failed, s.n_late, s.n_total) == (100, 2, 3, 102)
    assert s.duration_s == 2.0
    assert s.throughput_rps == 50.0
    assert s.late_send_pct == pytest.approx(100 * 3 / 102)
    assert s.failed_pct == pytest.approx(100 * 2 / 102)
    assert s.latency_ms == {
        "mean": 50.5,
        "p50": 50.0,
        "p90": 90.0,
        "p95": 95.0,
        "p99": 99.0,
        "p99.9": 100.0,
        "max": 100.0,
    }
    # 100 samples bound p99 from below only.
    assert s.p99_ci_ms == (97.0, None)
    assert s.p999_ci_ms[1] is None


def test_latency_counts_from_scheduled_not_sent_time():
    # Sent 5 ms late, answered 1 ms after sending: the latency is 6 ms
    # (no coordinated omission).
    s = summarize_point(
        np.array([0]),
        np.array([5 * MS]),
        np.array([6 * MS]),
        np.array([200]),
        started_ns=0,
        ended_ns=10**9,
        open_loop=True,
    )
    assert s.latency_ms["max"] == 6.0
    assert s.late_send_pct == 100.0


def test_closed_loop_reports_no_late_sends():
    s = summarize_point(*_point(), started_ns=0, ended_ns=2_000_000_000, open_loop=False)
    assert (s.late_send_pct, s.n_late) == (0.0, 0)
    assert s.n_ok == 100


def test_custom_late_threshold_and_never_sent():
    sched, sent, done, status = _point()
    sent[9] = -1  # never sent: late whatever the threshold
    s = summarize_point(
        sched,
        sent,
        done,
        status,
        started_ns=0,
        ended_ns=10**9,
        open_loop=True,
        late_threshold_ms=1.5,
    )
    assert s.n_late == 4  # the three 2 ms-late sends and the unsent one


def test_other_percentiles_use_the_kept_latencies():
    s = summarize_point(*_point(), started_ns=0, ended_ns=2_000_000_000, open_loop=True)
    assert s.percentile_ms(97.5) == 98.0  # rank ceil(97.5) = 98
    assert s.percentile_ms(99.0) == 99.0
    rebuilt = PointSummary(**{k: v for k, v in vars(s).items() if k != "latencies_ms"})
    assert rebuilt == s  # the array is not part of equality
    assert rebuilt.percentile_ms(99.9) == 100.0
    with pytest.raises(ValueError, match="97.5"):
        rebuilt.percentile_ms(97.5)
    assert "latencies_ms" not in s.to_dict() and s.to_dict()["p99_ci_ms"] == [97.0, None]


def test_all_failed_is_nan_free():
    s = summarize_point(
        np.array([0, 1]),
        np.array([0, 1]),
        np.array([-1, 5]),
        np.array([0, 503]),
        started_ns=0,
        ended_ns=10**9,
        open_loop=True,
    )
    assert (s.n_ok, s.n_failed, s.throughput_rps) == (0, 2, 0.0)
    assert set(s.latency_ms.values()) == {None}
    assert s.p99_ci_ms == (None, None)
    assert s.percentile_ms(99.0) is None


def test_rejects_inconsistent_input():
    with pytest.raises(ValueError, match="length"):
        summarize_point(
            np.array([0, 1]),
            np.array([0]),
            np.array([0]),
            np.array([200]),
            started_ns=0,
            ended_ns=1,
            open_loop=True,
        )
    with pytest.raises(ValueError, match="before"):
        summarize_point(
            np.array([0]),
            np.array([0]),
            np.array([0]),
            np.array([200]),
            started_ns=5,
            ended_ns=1,
            open_loop=True,
        )
