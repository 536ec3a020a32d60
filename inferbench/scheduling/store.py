"""Scheduling decisions in the results database (table sched_jobs): one row per scheduled
run, written by the run's own tasks (operators/scheduling.record_decision), read by the
scheduling benchmark and by anyone asking why a job went where it went.

The decision itself is made in Airflow (decisions.py, applied by the cluster policy); this
is its record. Rows are upserted: every task of a run records the run's decision, which is
a no-op when the row already says the same, and a run that was cleared and placed again
gets its new decision. `seq` numbers rows in the order they were first recorded (the order
the jobs' first tasks started); the order of the decisions is `submitted_at`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from inferbench.perfdb import schema
from inferbench.scheduling.decisions import Decision

_LOCK_ID = 727276  # pg_advisory_xact_lock id of sched_jobs writes (seq numbering)


def _decision(row) -> Decision:
    return Decision(dag_id=row.dag_id, run_id=row.run_id, policy=row.policy, worker=row.worker,
                    predicted_s=row.predicted_s, order_key=row.order_key,
                    priority_weight=row.priority_weight,
                    submitted_s=row.submitted_at.timestamp(),
                    key_ref_s=row.key_ref_at.timestamp(), loads=row.loads)


def _as_row(unix_s: float) -> float:
    return datetime.fromtimestamp(unix_s, UTC).timestamp()


def stored(conn: Connection, dag_id: str, run_id: str) -> Decision | None:
    t = schema.sched_jobs
    row = conn.execute(select(t).where(t.c.dag_id == dag_id, t.c.run_id == run_id)).first()
    return _decision(row) if row else None


def record(conn: Connection, decision: Decision) -> bool:
    """Store the run's decision (insert, or replace a different one). Returns whether a row
    was written. Call inside a transaction (`engine.begin()`)."""
    # One writer at a time: seq is max + 1, and the equality check must see the last write.
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
    # (Compared as the row gives it back: timestamps keep microseconds.)
    as_row = replace(decision, submitted_s=_as_row(decision.submitted_s),
                     key_ref_s=_as_row(decision.key_ref_s))
    if stored(conn, decision.dag_id, decision.run_id) == as_row:
        return False
    t = schema.sched_jobs
    values = {
        "policy": decision.policy, "worker": decision.worker,
        "predicted_s": decision.predicted_s, "order_key": decision.order_key,
        "priority_weight": decision.priority_weight,
        "submitted_at": datetime.fromtimestamp(decision.submitted_s, UTC),
        "key_ref_at": datetime.fromtimestamp(decision.key_ref_s, UTC),
        "loads": decision.loads,
    }
    seq = conn.execute(select(func.coalesce(func.max(t.c.seq), 0))).scalar_one() + 1
    conn.execute(insert(t).values(dag_id=decision.dag_id, run_id=decision.run_id, seq=seq,
                                  **values)
                 .on_conflict_do_update(index_elements=[t.c.dag_id, t.c.run_id], set_=values))
    return True


def recorded(conn: Connection, dag_id: str, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The recorded decisions of these runs of `dag_id`, in the order they were made."""
    t = schema.sched_jobs
    rows = conn.execute(select(t).where(t.c.dag_id == dag_id, t.c.run_id.in_(list(run_ids)))
                        .order_by(t.c.submitted_at, t.c.seq)).mappings().all()
    return [dict(r) for r in rows]
