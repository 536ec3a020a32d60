"""Reads from the results database: everything a report or a summary needs comes from here,
so both can be rebuilt from PostgreSQL alone."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Connection, select

from inferbench.perfdb import schema


def _rows(conn: Connection, table, run_id: str, order: list[str]) -> list[dict[str, Any]]:
    stmt = select(table).where(table.c.run_id == run_id).order_by(*(table.c[o] for o in order))
    return [dict(r._mapping) for r in conn.execute(stmt)]


def run_row(conn: Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(schema.runs).where(schema.runs.c.run_id == run_id)).first()
    return dict(row._mapping) if row else None


def run_tables(conn: Connection, run_id: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "models": _rows(conn, schema.models, run_id, ["model_name"]),
        "conversions": _rows(conn, schema.conversions, run_id, ["format"]),
        "deployments": _rows(conn, schema.deployments, run_id, ["platform"]),
        "points": _rows(conn, schema.points, run_id, ["platform", "point"]),
        "results": _rows(conn, schema.results, run_id, ["platform", "point"]),
        "provenance": _rows(conn, schema.provenance, run_id, ["platform"]),
    }


def request_arrays(conn: Connection, run_id: str, platform: str,
                   point: int) -> dict[str, np.ndarray]:
    t = schema.requests
    stmt = (select(t.c.scheduled_ns, t.c.sent_ns, t.c.first_byte_ns, t.c.done_ns, t.c.status)
            .where(t.c.run_id == run_id, t.c.platform == platform, t.c.point == point)
            .order_by(t.c.seq))
    rows = conn.execute(stmt).all()
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 5

    def to_array(values) -> np.ndarray:  # NULL timestamps become -1, as in memory
        return np.asarray([-1 if v is None else v for v in values], dtype=np.int64)

    return {"scheduled_ns": to_array(cols[0]), "sent_ns": to_array(cols[1]),
            "first_byte_ns": to_array(cols[2]), "done_ns": to_array(cols[3]),
            "status": np.asarray(cols[4], dtype=np.int32)}


def resource_summary(conn: Connection, run_id: str) -> dict[tuple[str, str], dict[str, float]]:
    """Mean / max CPU % and max RSS per (platform, source)."""
    t = schema.resource_samples
    rows = conn.execute(select(t.c.platform, t.c.source, t.c.cpu_pct, t.c.rss_bytes)
                        .where(t.c.run_id == run_id)).all()
    out: dict[tuple[str, str], dict[str, list]] = {}
    for platform, source, cpu, rss in rows:
        entry = out.setdefault((platform, source), {"cpu": [], "rss": []})
        if cpu is not None:
            entry["cpu"].append(cpu)
        if rss is not None:
            entry["rss"].append(rss)
    return {key: {"cpu_pct_mean": float(np.mean(v["cpu"])) if v["cpu"] else None,
                  "cpu_pct_max": float(np.max(v["cpu"])) if v["cpu"] else None,
                  "rss_bytes_max": int(np.max(v["rss"])) if v["rss"] else None}
            for key, v in out.items()}
