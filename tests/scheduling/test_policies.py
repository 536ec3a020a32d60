"""Placement and ordering policies as pure functions."""

from __future__ import annotations

import pytest

from inferbench.errors import InferBenchError
from inferbench.scheduling.policies import (
    CONTINUATION_BOOST,
    KEY_EPOCH,
    WEIGHT_BASE,
    Policy,
    Waiting,
    WorkerLoad,
    order_key,
    parse_policy,
    place,
    priority_weight,
    steal,
)
from inferbench.scheduling.workers import worker_names

W = worker_names(3)


def test_worker_names_and_bad_count():
    assert W == ["cpu-worker-0", "cpu-worker-1", "cpu-worker-2"]
    with pytest.raises(InferBenchError, match="0"):
        worker_names(0)


def test_parse_policy_names_the_allowed_values():
    assert parse_policy("qa_sjf") is Policy.QA_SJF
    with pytest.raises(InferBenchError, match=r"'sjf'.*'rr_fcfs', 'rr_sjf', 'qa_sjf'"):
        parse_policy("sjf")


@pytest.mark.parametrize("policy", [Policy.RR_FCFS, Policy.RR_SJF])
def test_round_robin_ignores_load(policy):
    busy = {"cpu-worker-1": WorkerLoad(5, 500.0)}
    assert place(policy, W, busy, None) == "cpu-worker-0"
    assert place(policy, W, busy, "cpu-worker-0") == "cpu-worker-1"  # even though it is the busiest
    assert place(policy, W, busy, "cpu-worker-2") == "cpu-worker-0"
    assert place(policy, W, busy, "cpu-worker-9") == "cpu-worker-0"  # a pool that is gone


def test_queue_aware_prefers_idle_then_least_work():
    loads = {"cpu-worker-0": WorkerLoad(1, 10.0), "cpu-worker-1": WorkerLoad(0, 0.0),
             "cpu-worker-2": WorkerLoad(2, 3.0)}
    assert place(Policy.QA_SJF, W, loads, "cpu-worker-0") == "cpu-worker-1"  # idle first
    loads["cpu-worker-1"] = WorkerLoad(3, 50.0)
    assert place(Policy.QA_SJF, W, loads, None) == "cpu-worker-2"  # least queued work
    loads["cpu-worker-0"] = WorkerLoad(1, 3.0)
    assert place(Policy.QA_SJF, W, loads, None) == "cpu-worker-0"  # tie on work: fewer jobs
    assert place(Policy.QA_SJF, W, {}, None) == "cpu-worker-0"  # nothing known: all idle


def test_fcfs_key_is_submission_time_and_sjf_key_ages():
    t = KEY_EPOCH + 1000.0
    assert order_key(Policy.RR_FCFS, 99.0, t) == 1000.0
    assert order_key(Policy.RR_SJF, 20.0, t, aging_rate=0.0) == 20.0
    assert order_key(Policy.QA_SJF, 20.0, t, aging_rate=0.1) == pytest.approx(120.0)
    assert order_key(Policy.QA_SJF, 20.0, t, aging_rate=0.1, ref_s=t - 10) == pytest.approx(21.0)
    assert order_key(Policy.RR_FCFS, 20.0, t, ref_s=t - 10) == 10.0
    with pytest.raises(InferBenchError, match="aging_rate -1"):
        order_key(Policy.QA_SJF, 1.0, t, aging_rate=-1)


def test_aging_bounds_overtaking():
    """A long job (100 s) submitted at t is overtaken by a 1 s job arriving before
    t + (100 - 1) / 0.1 = t + 990 s, never by one arriving after."""
    t = KEY_EPOCH + 5000.0
    long_key = order_key(Policy.QA_SJF, 100.0, t, 0.1)
    assert order_key(Policy.QA_SJF, 1.0, t + 989.0, 0.1) < long_key
    assert order_key(Policy.QA_SJF, 1.0, t + 991.0, 0.1) > long_key


def test_priority_weight_order_resolution_and_boost():
    assert priority_weight(0.0) == WEIGHT_BASE
    assert priority_weight(12.345) == WEIGHT_BASE - 1235  # 0.01 s resolution
    assert priority_weight(1.0) > priority_weight(1.1)  # shorter key, higher weight
    assert priority_weight(1e12) == 1  # clamped, never zero or negative
    first_of_anyone = priority_weight(-1e12)  # the highest a first task can get
    assert first_of_anyone == WEIGHT_BASE
    assert priority_weight(1e6, continuation=True) > first_of_anyone
    assert priority_weight(0.0, continuation=True) == WEIGHT_BASE + CONTINUATION_BOOST < 2**31


def test_a_free_worker_steals_the_first_waiting_job_of_a_busy_one():
    waiting = [Waiting("x", "cpu-worker-1", 10, 1.0), Waiting("y", "cpu-worker-1", 20, 2.0),
               Waiting("z", "cpu-worker-2", 30, 0.5)]
    # cpu-worker-2 is idle too (about to start z itself): only the busy worker's jobs count.
    assert steal(Policy.WS_SJF, "cpu-worker-0", waiting, {"cpu-worker-1"}).label == "y"
    assert steal(Policy.WS_SJF, "cpu-worker-0", waiting,
                 {"cpu-worker-1", "cpu-worker-2"}).label == "z"
    # Equal weights: the earlier submission.
    tie = [Waiting("late", "cpu-worker-1", 5, 9.0), Waiting("early", "cpu-worker-1", 5, 3.0)]
    assert steal(Policy.WS_SJF, "cpu-worker-0", tie, {"cpu-worker-1"}).label == "early"
    # Its own first job is the best: it runs that, nothing moves.
    own = [*waiting, Waiting("mine", "cpu-worker-0", 25, 0.1)]
    assert steal(Policy.WS_SJF, "cpu-worker-0", own, {"cpu-worker-1"}) is None
    assert steal(Policy.WS_SJF, "cpu-worker-0", own, {"cpu-worker-2"}).label == "z"
    # Only jobs of its class: a job waiting on a GPU worker may need the GPU.
    gpu = [Waiting("g", "gpu-worker-0", 99, 0.0), *waiting]
    assert steal(Policy.WS_SJF, "cpu-worker-0", gpu, {"cpu-worker-1", "gpu-worker-0"}) \
        .label == "y"
    assert steal(Policy.WS_SJF, "gpu-worker-1", gpu, {"cpu-worker-1", "gpu-worker-0"}) \
        .label == "g"
    # Nothing waiting, or a policy that does not steal.
    assert steal(Policy.WS_SJF, "cpu-worker-0", [], {"cpu-worker-1"}) is None
    for policy in (Policy.RR_FCFS, Policy.RR_SJF, Policy.QA_SJF):
        assert not policy.steals
        assert steal(policy, "cpu-worker-0", waiting, {"cpu-worker-1"}) is None
