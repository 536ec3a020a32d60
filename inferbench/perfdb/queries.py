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
        "deployments": _rows(conn, schema.deployments, run_id, ["platform", "config_index"]),
        "points": _rows(conn, schema.points, run_id, ["platform", "config_index", "point"]),
        "results": _rows(conn, schema.results, run_id, ["platform", "config_index", "point"]),
        "provenance": _rows(conn, schema.provenance, run_id, ["platform", "config_index"]),
        "server_configs": _rows(conn, schema.server_configs, run_id,
                                ["platform", "config_index"]),
    }


def request_arrays(conn: Connection, run_id: str, platform: str,
                   point: int, config_index: int = 0) -> dict[str, np.ndarray]:
    t = schema.requests
    stmt = (select(t.c.scheduled_ns, t.c.sent_ns, t.c.first_byte_ns, t.c.done_ns, t.c.status,
                   t.c.seq_len, t.c.padded_len)
            .where(t.c.run_id == run_id, t.c.platform == platform,
                   t.c.config_index == config_index, t.c.point == point)
            .order_by(t.c.seq))
    rows = conn.execute(stmt).all()
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 7

    def to_array(values) -> np.ndarray:  # NULL timestamps become -1, as in memory
        return np.asarray([-1 if v is None else v for v in values], dtype=np.int64)

    arrays = {"scheduled_ns": to_array(cols[0]), "sent_ns": to_array(cols[1]),
              "first_byte_ns": to_array(cols[2]), "done_ns": to_array(cols[3]),
              "status": np.asarray(cols[4], dtype=np.int32)}
    if rows and rows[0].seq_len is not None:  # a variable-length workload's point
        arrays["seq_len"] = to_array(cols[5])
        arrays["padded_len"] = to_array(cols[6])
    return arrays


def resource_samples_by_config(conn: Connection, run_id: str) -> dict[tuple[str, int], list[dict]]:
    """Every resource sample of a run by (platform, config_index), in time order."""
    t = schema.resource_samples
    rows = conn.execute(select(t).where(t.c.run_id == run_id)
                        .order_by(t.c.platform, t.c.config_index, t.c.t_ns)).all()
    out: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        out.setdefault((row.platform, row.config_index), []).append(dict(row._mapping))
    return out


# --- analysis: cross-run reads for the report, leaderboard and recommender ---

def point_records(conn: Connection, *, run_ids: list[str] | None = None,
                  sweep_id: str | None = None) -> list[dict[str, Any]]:
    """One flat dict per analysed point (see analysis/points.py) of the given runs, or of
    every run of a sweep, or of all runs. Every results / points / runs column is carried,
    so columns added later flow through to the analyses."""
    from inferbench.backends import descriptors
    from inferbench.network.profiles import network_label
    from inferbench.processing import pipeline_label

    r, p, ru, m = schema.results, schema.points, schema.runs, schema.models
    sc = schema.server_configs
    point_columns = [c for c in p.c if c.name not in r.c]  # the key is in results too
    # The server configuration's label makes the family: two configurations of one platform
    # at one batch size are two families, each with its own load ladder.
    stmt = (select(r, *point_columns, ru.c.name, ru.c.sweep_id, ru.c.hardware,
                   ru.c.created_at, ru.c.quality_ok, ru.c.spec, m.c.model_name, m.c.family,
                   m.c.hyperparams, sc.c.label.label("server_config"))
            .join(p, (p.c.run_id == r.c.run_id) & (p.c.platform == r.c.platform)
                  & (p.c.config_index == r.c.config_index) & (p.c.point == r.c.point))
            .join(ru, ru.c.run_id == r.c.run_id)
            .outerjoin(m, m.c.run_id == r.c.run_id)
            .outerjoin(sc, (sc.c.run_id == r.c.run_id) & (sc.c.platform == r.c.platform)
                       & (sc.c.config_index == r.c.config_index))
            .order_by(ru.c.created_at, r.c.run_id, r.c.platform, r.c.config_index,
                      r.c.point))
    if run_ids is not None:
        stmt = stmt.where(r.c.run_id.in_(run_ids))
    if sweep_id is not None:
        stmt = stmt.where(ru.c.sweep_id == sweep_id)
    formats = {p.value: d.model_format.value for p, d in descriptors().items()}
    out = []
    for row in conn.execute(stmt):
        rec = dict(row._mapping)
        rec["format"] = formats.get(rec["platform"])  # None: a platform this checkout lacks
        spec = rec.get("spec") or {}
        # The link and the pipeline are part of what was measured: each its own family.
        for key, label in (("network", network_label(spec.get("network"))),
                           ("pipeline", pipeline_label(spec.get("pipeline")))):
            if label is not None:
                rec["config"] = {**(rec.get("config") or {}), key: label}
        out.append(rec)
    return out


def sweep_run_ids(conn: Connection, sweep_id: str) -> list[str]:
    t = schema.runs
    return list(conn.execute(select(t.c.run_id).where(t.c.sweep_id == sweep_id)
                             .order_by(t.c.created_at)).scalars())


def leaderboard_rows(conn: Connection) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names and rows of the `leaderboard` view (migration i4_analysis)."""
    from sqlalchemy import text

    result = conn.execute(text("SELECT * FROM leaderboard"))
    return list(result.keys()), [dict(row._mapping) for row in result]


def capacity_rows(conn: Connection, *, run_ids: list[str] | None = None
                  ) -> list[dict[str, Any]]:
    """The stored capacity at SLO per family (table `capacities`, written by analyze) of the
    given runs, or of all runs, with the server configuration's label."""
    c, sc = schema.capacities, schema.server_configs
    stmt = (select(c, sc.c.label.label("server_config"))
            .outerjoin(sc, (sc.c.run_id == c.c.run_id) & (sc.c.platform == c.c.platform)
                       & (sc.c.config_index == c.c.config_index))
            .order_by(c.c.run_id, c.c.platform, c.c.config_index, c.c.batch_size))
    if run_ids is not None:
        stmt = stmt.where(c.c.run_id.in_(run_ids))
    return [dict(row._mapping) for row in conn.execute(stmt)]


def family_prediction_rows(conn: Connection, *, run_ids: list[str] | None = None
                           ) -> list[dict[str, Any]]:
    """The load stage's prediction per family (table `family_predictions`, written by
    collect) of the given runs, or of all runs, with the server configuration's label."""
    f, sc = schema.family_predictions, schema.server_configs
    stmt = (select(f, sc.c.label.label("server_config"))
            .outerjoin(sc, (sc.c.run_id == f.c.run_id) & (sc.c.platform == f.c.platform)
                       & (sc.c.config_index == f.c.config_index))
            .order_by(f.c.run_id, f.c.platform, f.c.config_index, f.c.batch_size))
    if run_ids is not None:
        stmt = stmt.where(f.c.run_id.in_(run_ids))
    return [dict(row._mapping) for row in conn.execute(stmt)]


def capacity_leaderboard_rows(conn: Connection) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names and rows of the `capacity_leaderboard` view (migration i13_capacities)
    with the resource use at capacity (view `capacity_utilisation`, i20): one row per family
    of every run."""
    from sqlalchemy import text

    result = conn.execute(text(
        "SELECT l.*, u.server_cpu_pct, u.server_rss_mb, u.client_cpu_pct, u.gpu_util_pct "
        "FROM capacity_leaderboard l LEFT JOIN capacity_utilisation u USING "
        "(run_id, platform, config_index, batch_size)"))
    return list(result.keys()), [dict(row._mapping) for row in result]


def resource_series(conn: Connection, run_id: str, platform: str,
                    source: str) -> dict[str, np.ndarray]:
    """Time series of one sampler source, ordered by time (NULLs as NaN)."""
    t = schema.resource_samples
    rows = conn.execute(select(t.c.t_ns, t.c.cpu_pct, t.c.gpu_power_w, t.c.gpu_energy_mj)
                        .where(t.c.run_id == run_id, t.c.platform == platform,
                               t.c.source == source).order_by(t.c.t_ns)).all()
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], []]

    def arr(values) -> np.ndarray:
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)

    return {"t_ns": np.asarray(cols[0], dtype=np.int64), "cpu_pct": arr(cols[1]),
            "gpu_power_w": arr(cols[2]), "gpu_energy_mj": arr(cols[3])}
