"""Scheduling decisions against a real PostgreSQL: made once per run, placed from what is
active, keyed from the start of the busy period."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from inferbench.scheduling.policies import Policy, priority_weight, worker_names
from inferbench.scheduling.store import decide, stored

pytestmark = pytest.mark.integration
W = worker_names(2)
DAG = "test_store_dag"


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


def test_decisions_place_key_and_stick(conn):
    t = 1_800_000_000.0
    kw = {"dag_id": DAG, "policy": Policy.QA_SJF, "aging_rate": 0.1, "workers": W}
    a = decide(conn, run_id="a", predicted_s=30.0, active={}, now_s=t, **kw)
    assert (a.worker, a.key_ref_s, a.order_key) == ("worker-0", t, 30.0)
    assert a.priority_weight == priority_weight(30.0)
    # a is active (running for 10 s): worker-1 is idle, so b goes there
    b = decide(conn, run_id="b", predicted_s=5.0, active={(DAG, "a"): t}, now_s=t + 10, **kw)
    assert b.worker == "worker-1" and b.loads == {"worker-0": [1, 20.0], "worker-1": [0, 0.0]}
    assert (b.key_ref_s, b.order_key) == (t, 5.0 + 0.1 * 10)  # same busy period as a
    # both busy: least queued work is worker-1 (5 s waiting) vs worker-0 (30 - 12 left)
    active = {(DAG, "a"): t, (DAG, "b"): None}
    c = decide(conn, run_id="c", predicted_s=1.0, active=active, now_s=t + 12, **kw)
    assert c.worker == "worker-1" and c.loads["worker-0"] == [1, 18.0]
    # asked again (another task of c): the stored decision, whatever the state now
    again = decide(conn, run_id="c", predicted_s=99.0, active={}, now_s=t + 500, **kw)
    assert again == c == stored(conn, DAG, "c")
    # nothing active any more: a new busy period starts, keys count from it
    d = decide(conn, run_id="d", predicted_s=2.0, active={}, now_s=t + 1000, **kw)
    assert (d.key_ref_s, d.order_key, d.worker) == (t + 1000, 2.0, "worker-0")


def test_round_robin_continues_from_the_last_decision(conn):
    kw = {"dag_id": DAG, "policy": Policy.RR_FCFS, "aging_rate": 0.1, "workers": W,
          "active": {}, "predicted_s": 1.0}
    got = [decide(conn, run_id=f"r{i}", now_s=1_800_000_000.0 + i, **kw).worker
           for i in range(3)]
    assert got[1] != got[0] and got[2] == got[0]
