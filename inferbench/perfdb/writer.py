"""Writes to the results database. Every write is idempotent so a retried task is harmless:
rows are upserted, and a platform's measurements are replaced as a whole in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert

from inferbench.perfdb import schema
from inferbench.spec import BenchmarkSpec


def now() -> datetime:
    return datetime.now(UTC)


def upsert(conn: Connection, table: Table, row: Mapping[str, Any]) -> None:
    keys = [c.name for c in table.primary_key.columns]
    stmt = insert(table).values(**row)
    changes = {k: stmt.excluded[k] for k in row if k not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=changes) if changes
                 else stmt.on_conflict_do_nothing(index_elements=keys))


def register_run(conn: Connection, run_id: str, spec: BenchmarkSpec) -> None:
    """Create the run's row (status running); a retry keeps its created_at."""
    stmt = insert(schema.runs).values(
        run_id=run_id, name=spec.name, spec=spec.model_dump(mode="json"),
        spec_hash=spec.spec_hash(), status="running", created_at=now(),
        sweep_id=getattr(spec, "sweep_id", None))
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["run_id"],
        set_={"spec": stmt.excluded.spec, "spec_hash": stmt.excluded.spec_hash,
              "status": "running"}))


def abort_run(conn: Connection, run_id: str, reason: str) -> bool:
    """Mark a run that ended without its analysis `aborted` (INVALID, with the reason);
    a run that finished keeps its status. True if the run was still `running`."""
    done = conn.execute(update(schema.runs).where(
        schema.runs.c.run_id == run_id, schema.runs.c.status == "running").values(
        status="aborted", verdict="INVALID", verdict_reasons=[reason], finished_at=now()))
    return done.rowcount > 0


def abort_abandoned_runs(conn: Connection, older_than: timedelta) -> list[str]:
    """Abort the runs still `running` that started longer ago than any run may last (the
    DAG's run timeout): their DAG run has ended, and the note of it could not be written
    then (the database was down when it failed). Returns their ids."""
    cutoff = now() - older_than
    stale = conn.execute(select(schema.runs.c.run_id).where(
        schema.runs.c.status == "running", schema.runs.c.created_at < cutoff)).scalars().all()
    reason = (f"still running {older_than} after it started, longer than a run may last: it "
              "ended without its analysis, and its end could not be recorded then")
    return [run_id for run_id in stale if abort_run(conn, run_id, reason)]


def finish_run(conn: Connection, run_id: str, *, status: str, verdict: str,
               reasons: list[str], report_path: str | None) -> None:
    conn.execute(update(schema.runs).where(schema.runs.c.run_id == run_id).values(
        status=status, verdict=verdict, verdict_reasons=reasons, report_path=report_path,
        finished_at=now()))


def _copy_rows(conn: Connection, table: Table, columns: list[str],
               rows: Iterable[tuple]) -> None:
    """Bulk insert with PostgreSQL COPY: per-request tables hold tens of thousands of rows."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(
            f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


REQUEST_COLUMNS = ["scheduled_ns", "sent_ns", "first_byte_ns", "done_ns", "status",
                   "bytes_sent", "bytes_received",
                   # a variable-length workload's only (NULL when a point's records lack them)
                   "seq_len", "padded_len",
                   # a pipeline's processing on the client only (NULL likewise)
                   "client_preprocess_ms", "client_postprocess_ms"]


def replace_platform_measurements(
    conn: Connection, run_id: str, platform: str, *, deployment: Mapping[str, Any],
    points: list[Mapping[str, Any]], requests: Mapping[int, Mapping[str, np.ndarray]],
    samples: list[Mapping[str, Any]], provenance: Mapping[str, Any],
    config_index: int = 0, server_config: Mapping[str, Any] | None = None,
    predictions: Iterable[Mapping[str, Any]] = (),
) -> None:
    """Everything one platform measured under one server configuration, replacing what an
    earlier try of the task wrote. `server_config` is its label and knobs; `predictions`
    its families' rows of `family_predictions` (one per batch size; none when the load
    stage predicted nothing, which removes an earlier try's)."""
    key = {"run_id": run_id, "platform": platform, "config_index": config_index}
    for table in (schema.requests, schema.resource_samples, schema.points, schema.results,
                  schema.deployments, schema.provenance, schema.server_configs,
                  schema.family_predictions):
        conn.execute(delete(table).where(*(table.c[k] == v for k, v in key.items())))
    if server_config is not None:
        conn.execute(insert(schema.server_configs).values(**key, **server_config))
    conn.execute(insert(schema.deployments).values(**key, **deployment))
    conn.execute(insert(schema.provenance).values(**key, facts=dict(provenance)))
    if points:
        conn.execute(insert(schema.points), [{**key, **p} for p in points])
    predicted = [{**key, **p} for p in predictions]
    if predicted:
        conn.execute(insert(schema.family_predictions), predicted)
    for point, arrays in requests.items():
        n = len(arrays["status"])
        cols = [np.asarray(arrays[c]).tolist() if c in arrays else [None] * n
                for c in REQUEST_COLUMNS]
        for nullable in ("first_byte_ns", "done_ns"):  # -1 in memory means "never happened"
            col = cols[REQUEST_COLUMNS.index(nullable)]
            cols[REQUEST_COLUMNS.index(nullable)] = [v if v >= 0 else None for v in col]
        rows = ((run_id, platform, config_index, point, seq, *(col[seq] for col in cols))
                for seq in range(n))
        _copy_rows(conn, schema.requests,
                   ["run_id", "platform", "config_index", "point", "seq", *REQUEST_COLUMNS],
                   rows)
    if samples:
        conn.execute(insert(schema.resource_samples), [{**key, **s} for s in samples])


def replace_capacities(conn: Connection, run_id: str,
                       rows: Iterable[Mapping[str, Any]]) -> None:
    """The run's capacity rows (one per family, analysis.capacity.FamilyCapacity.to_dict),
    replacing what an earlier analysis of the run wrote. Keys that are not columns (the
    family's label, its server configuration's label) are dropped."""
    table = schema.capacities
    conn.execute(delete(table).where(table.c.run_id == run_id))
    names = {c.name for c in table.columns}
    values = [{**{k: v for k, v in row.items() if k in names}, "run_id": run_id}
              for row in rows]
    if values:
        conn.execute(insert(table), values)
