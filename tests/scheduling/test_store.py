"""Scheduling decisions: placed from what is active and keyed from the start of the busy
period (pure), and recorded in a real PostgreSQL once per run (the record)."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import delete

from inferbench.errors import InferBenchError
from inferbench.scheduling.decisions import ActiveJob, Decision, decide, dispatch
from inferbench.scheduling.policies import Policy, priority_weight
from inferbench.scheduling.store import record, recorded, stored
from inferbench.scheduling.workers import worker_names

W = worker_names(2)
DAG = "test_store_dag"
T = 1_800_000_000.0


def test_decisions_place_from_what_is_active_and_key_from_the_busy_period():
    kw = {"dag_id": DAG, "policy": Policy.QA_SJF, "aging_rate": 0.1, "workers": W,
          "last_worker": None}
    a = decide(run_id="a", predicted_s=30.0, active=[], now_s=T, **kw)
    assert (a.worker, a.key_ref_s, a.order_key) == ("cpu-worker-0", T, 30.0)
    assert a.priority_weight == priority_weight(30.0)
    # a is active (running for 10 s): cpu-worker-1 is idle, so b goes there
    b = decide(run_id="b", predicted_s=5.0, active=[ActiveJob(a, T)], now_s=T + 10, **kw)
    assert b.worker == "cpu-worker-1"
    assert b.loads == {"cpu-worker-0": [1, 20.0], "cpu-worker-1": [0, 0.0]}
    assert (b.key_ref_s, b.order_key) == (T, 5.0 + 0.1 * 10)  # same busy period as a
    # both busy: least queued work is cpu-worker-1 (5 s waiting) vs cpu-worker-0 (30 - 12 left)
    c = decide(run_id="c", predicted_s=1.0, active=[ActiveJob(a, T), ActiveJob(b, None)],
               now_s=T + 12, **kw)
    assert c.worker == "cpu-worker-1" and c.loads["cpu-worker-0"] == [1, 18.0]
    # a job past its prediction counts no work, but still holds its worker
    late = decide(run_id="late", predicted_s=1.0, active=[ActiveJob(a, T)], now_s=T + 99, **kw)
    assert late.loads["cpu-worker-0"] == [1, 0.0] and late.worker == "cpu-worker-1"
    # a job on a worker that is gone counts nowhere
    gone = dataclasses.replace(a, worker="cpu-worker-7")
    assert decide(run_id="x", predicted_s=1.0, active=[ActiveJob(gone, None)], now_s=T,
                  **kw).loads == {"cpu-worker-0": [0, 0.0], "cpu-worker-1": [0, 0.0]}
    # nothing active any more: a new busy period starts, keys count from it
    d = decide(run_id="d", predicted_s=2.0, active=[], now_s=T + 1000, **kw)
    assert (d.key_ref_s, d.order_key, d.worker) == (T + 1000, 2.0, "cpu-worker-0")


def test_round_robin_continues_from_the_last_worker():
    kw = {"dag_id": DAG, "policy": Policy.RR_FCFS, "aging_rate": 0.1, "workers": W,
          "active": [], "predicted_s": 1.0, "now_s": T}
    assert decide(run_id="r0", last_worker=None, **kw).worker == "cpu-worker-0"
    assert decide(run_id="r1", last_worker="cpu-worker-0", **kw).worker == "cpu-worker-1"
    assert decide(run_id="r2", last_worker="cpu-worker-1", **kw).worker == "cpu-worker-0"
    assert decide(run_id="r3", last_worker="cpu-worker-9", **kw).worker == "cpu-worker-0"


def test_decision_json_round_trip_and_refusal():
    d = decide(dag_id=DAG, run_id="manual__2026-01-01T00:00:00+00:00", predicted_s=12.345,
               policy=Policy.RR_SJF, aging_rate=0.1, workers=W, active=[], last_worker=None,
               now_s=T + 0.123456789)
    assert Decision.from_json(d.to_json()) == d
    with pytest.raises(InferBenchError, match="not a scheduling decision"):
        Decision.from_json('{"dag_id": "x"}')
    with pytest.raises(InferBenchError, match="not a scheduling decision"):
        Decision.from_json("cpu-worker-0")


def test_a_decision_kept_before_runs_could_wait_reads_as_holding_its_worker():
    d = decide(dag_id=DAG, run_id="r", predicted_s=1.0, policy=Policy.QA_SJF, aging_rate=0.1,
               workers=W, active=[], last_worker=None, now_s=T)
    older = d.to_json().replace(', "held": false', "")
    assert "held" not in older and Decision.from_json(older) == d


def _job(run_id: str, worker: str, weight: int, held: bool, submitted_s: float = T) -> Decision:
    d = decide(dag_id=DAG, run_id=run_id, predicted_s=1.0, policy=Policy.QA_SJF,
               aging_rate=0.0, workers=[worker], active=[], last_worker=None,
               now_s=submitted_s)
    return dataclasses.replace(d, priority_weight=weight, held=held)


def test_dispatch_hands_each_free_worker_its_next_waiting_job():
    jobs = {"run": _job("run", W[0], 5, held=False),
            "w0-low": _job("w0-low", W[0], 1, held=True),
            "w1-high": _job("w1-high", W[1], 9, held=True),
            "w1-low": _job("w1-low", W[1], 2, held=True)}
    # cpu-worker-1 is free: it takes its own first; cpu-worker-0 is held by `run`.
    handed = dispatch(Policy.QA_SJF, jobs, W)
    assert {k: (d.worker, d.held) for k, d in handed.items()} == {"w1-high": (W[1], False)}
    # Nothing free: nothing handed.
    busy = {**jobs, "w1-run": _job("w1-run", W[1], 5, held=False)}
    assert dispatch(Policy.QA_SJF, busy, W) == {}
    # Stealing, both workers free: the two first jobs of all, each on its own worker if
    # that is free, else on a free one (w1-low on cpu-worker-0, w0-low waits).
    free = {k: d for k, d in jobs.items() if k != "run"}
    handed = dispatch(Policy.WS_SJF, free, W)
    assert {k: d.worker for k, d in handed.items()} == {"w1-high": W[1], "w1-low": W[0]}
    assert dispatch(Policy.QA_SJF, free, W).keys() == {"w1-high", "w0-low"}
    # A GPU worker's waiting job is not stolen by a CPU worker.
    gpu = {"g": _job("g", "gpu-worker-0", 9, held=True),
           "g-run": _job("g-run", "gpu-worker-0", 5, held=False)}
    assert dispatch(Policy.WS_SJF, gpu, [W[0], "gpu-worker-0"]) == {}


@pytest.fixture
def conn(db_url):
    from inferbench import perfdb
    from inferbench.perfdb import schema

    engine = perfdb.engine(db_url)
    with engine.begin() as c:
        c.execute(delete(schema.sched_jobs).where(schema.sched_jobs.c.dag_id == DAG))
    with engine.connect() as c:
        yield c
        c.rollback()
    with engine.begin() as c:
        c.execute(delete(schema.sched_jobs).where(schema.sched_jobs.c.dag_id == DAG))
    engine.dispose()


@pytest.mark.integration
def test_record_once_per_run_replace_when_placed_again(conn):
    kw = {"dag_id": DAG, "policy": Policy.QA_SJF, "aging_rate": 0.1, "workers": W,
          "last_worker": None}
    # sub-microsecond times: the row keeps microseconds, and that still counts as the same
    a = decide(run_id="a", predicted_s=30.0, active=[], now_s=T + 0.1234567, **kw)
    b = decide(run_id="b", predicted_s=5.0, active=[ActiveJob(a, None)], now_s=T + 1.5, **kw)
    assert record(conn, b) and record(conn, a)  # recorded in the order the tasks start
    assert not record(conn, a) and not record(conn, b)  # every task may call it: no-ops
    got = stored(conn, DAG, "a")
    assert got.worker == a.worker and got.loads == a.loads
    assert got.submitted_s == pytest.approx(a.submitted_s, abs=1e-6)
    rows = recorded(conn, DAG, ["a", "b", "nope"])
    assert [r["run_id"] for r in rows] == ["a", "b"]  # in decision order
    seq = {r["run_id"]: r["seq"] for r in rows}
    assert seq["b"] < seq["a"]  # numbered as recorded
    # run a cleared and placed again: the row is replaced, its number kept
    again = decide(run_id="a", predicted_s=30.0, active=[ActiveJob(b, None)],
                   now_s=T + 60, **kw)
    assert record(conn, again)
    assert stored(conn, DAG, "a").worker == again.worker == "cpu-worker-0"
    assert stored(conn, DAG, "a").submitted_s == T + 60
    assert {r["run_id"]: r["seq"] for r in recorded(conn, DAG, ["a", "b"])} == seq
