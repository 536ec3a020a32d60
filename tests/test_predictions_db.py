"""The load stage's predictions on a real PostgreSQL: collect stores each family's profile
and model (`family_predictions`) and each point's predicted mean and p99, and re-collecting
replaces them; a load.json without predictions still collects; the summary and the report
show them ("Predicted vs measured"); migration i15 goes down and up.

No server runs: the run's files are written as the load stage writes them, with synthetic
requests and a synthetic profile (a 4-worker server of 5 ms deterministic service)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select, text

from analysis.prediction import Level, predict
from inferbench import perfdb
from inferbench.perfdb import schema, writer
from inferbench.server_grid import resolve_configs
from inferbench.stages import STAGES
from inferbench.stages.common import make_context, write_json

pytestmark = pytest.mark.integration


def known_levels(c: int, service_ms: float, overhead_ms: float,
                 spread_ms: float) -> list[Level]:
    """What profiling a c-worker server of deterministic service would measure (as in
    tests/analysis/test_prediction.py): no queueing below c + 1 in flight; at c + 1 the
    workers never idle."""
    rng = np.random.default_rng(3)
    levels = []
    for k in range(1, c + 1):
        lat = service_ms + overhead_ms + rng.normal(0.0, spread_ms, 4000).clip(
            -3 * spread_ms, 3 * spread_ms)
        levels.append(Level.from_latencies(k, lat, lat.sum() / 1000.0 / k))
    capacity = 1000.0 * c / service_ms
    lat = np.full(4000, (c + 1) / capacity * 1000.0)
    levels.append(Level.from_latencies(c + 1, lat, 4000 / capacity))
    return levels


PLATFORM = "onnxruntime"
SPEC = {
    "name": "predictions-db",
    "model": {"family": "cnn", "depth": 1, "width": 8, "input_shape": [3, 16, 16]},
    "formats": ["onnx"], "platforms": [PLATFORM], "batch_sizes": [1, 2, 4],
    "workload": {"arrival": "poisson", "rate_rps": 200, "seed": 3},
    "warmup_s": 0.5, "min_duration_s": 1, "min_requests": 40, "max_duration_s": 10,
    "slo": {"percentile": 99, "latency_ms": 50}, "max_late_send_pct": 25,
}
C = 4                      # the profiled server's parallelism
RATES = (200.0, 400.0)     # the batch-1 family's rungs (model capacity: 800 req/s)
LEVELS = known_levels(C, 5.0, 0.2, spread_ms=0.3)
MODEL = predict(LEVELS, C)


def _requests(rate: float, started_ns: int, seed: int) -> dict[str, np.ndarray]:
    """One second of Poisson arrivals at `rate`, answered in 5.2 ms plus an exponential
    queue (so the measurements differ from the prediction)."""
    rng = np.random.default_rng(seed)
    n = int(rate)
    scheduled = started_ns + np.cumsum(rng.exponential(1e9 / rate, n)).astype(np.int64)
    latency_ns = ((5.2 + rng.exponential(0.5 + rate / 400.0, n)) * 1e6).astype(np.int64)
    return {"scheduled_ns": scheduled, "sent_ns": scheduled + 10_000,
            "first_byte_ns": scheduled + latency_ns - 1000, "done_ns": scheduled + latency_ns,
            "status": np.full(n, 200, dtype=np.int32),
            "bytes_sent": np.full(n, 100, dtype=np.int32),
            "bytes_received": np.full(n, 40, dtype=np.int32)}


def _family_entries() -> list[dict]:
    """The load stage's `predictions`: batch 1 modelled, batch 2 unmodelled (dynamic
    batching), batch 4 not profiled."""
    modelled = MODEL.model.to_dict()
    batching = predict(LEVELS, C, dynamic_batching=True).model.to_dict()
    levels = [lv.to_dict() for lv in LEVELS]
    return [
        {"batch_size": 1, "parallelism": C, "dynamic_batching": False, "profile_s": 10.5,
         "levels": levels, "model": modelled, "slo_capacity_rps": 700.0,
         "guided_start": 630.0, "error": None},
        {"batch_size": 2, "parallelism": C, "dynamic_batching": True, "profile_s": 10.2,
         "levels": levels, "model": batching, "slo_capacity_rps": None,
         "guided_start": None, "error": None},
        {"batch_size": 4, "parallelism": C, "dynamic_batching": False, "profile_s": 0.4,
         "levels": [], "model": None, "slo_capacity_rps": None, "guided_start": None,
         "error": "profiling failed: connection refused"}]


def write_run(run_id: str, root: Path, db_url: str, *, predictions: bool):
    """A run whose load stage measured two Poisson rungs of batch 1 (and one each of
    batches 2 and 4), written as the stages write it; its `runs` row registered."""
    ctx = make_context(run_id, spec_json=json.dumps(SPEC), db_url=db_url, runs_root=root)
    with ctx.db.begin() as conn:
        conn.execute(delete(schema.runs).where(schema.runs.c.run_id == run_id))
        writer.register_run(conn, run_id, ctx.spec)
    files = resolve_configs(ctx.spec, ctx.run_dir, PLATFORM)[0].files
    files.points_dir.mkdir(exist_ok=True)
    write_json(files.endpoint, {"platform": PLATFORM, "url": "http://127.0.0.1:1",
                                "model_name": "m", "status": "ready",
                                "platform_version": "test", "cold_start_s": 1.0})
    points = []
    for i, (batch, rate) in enumerate([(1, RATES[0]), (1, RATES[1]), (2, RATES[0]),
                                       (4, RATES[0])]):
        started = 10**12 + i * 2 * 10**9
        arrays = _requests(rate, started, seed=i)
        np.savez(files.point_records(i), **arrays)
        point = {"point": i, "batch_size": batch, "arrival": "poisson", "concurrency": None,
                 "target_rate_rps": rate, "started_ns": started,
                 "ended_ns": int(arrays["done_ns"].max()) + 1000, "stop_reason": "max_duration",
                 "complete": True, "client_cpu_s": 0.1, "host_stall_pct": 0.0,
                 "issuer_nice": 0, "n_requests": len(arrays["status"]), "stable": True,
                 "stability_reasons": []}
        if predictions:
            at = MODEL.at(rate) if batch == 1 else None
            point.update(predicted_mean_ms=at and at.mean_ms, predicted_p99_ms=at and at.p99_ms)
        points.append(point)
    load = {"platform": PLATFORM, "config": 0, "points": points,
            "samples_file": files.samples.name}
    if predictions:
        load["predictions"] = _family_entries()
    write_json(files.load, load)
    files.samples.write_text("[]")
    return ctx, files


def stored(db_url: str, run_id: str) -> tuple[list[dict], list[tuple]]:
    with perfdb.engine(db_url).connect() as conn:
        fams = [dict(r._mapping) for r in conn.execute(
            select(schema.family_predictions).where(
                schema.family_predictions.c.run_id == run_id)
            .order_by(schema.family_predictions.c.batch_size))]
        pts = [tuple(r) for r in conn.execute(
            select(schema.points.c.point, schema.points.c.predicted_mean_ms,
                   schema.points.c.predicted_p99_ms)
            .where(schema.points.c.run_id == run_id).order_by(schema.points.c.point))]
    return fams, pts


def test_collect_stores_predictions_and_recollecting_replaces_them(db_url, tmp_path):
    ctx, files = write_run("predictions-collect", tmp_path, db_url, predictions=True)
    STAGES["collect"](ctx, PLATFORM)
    first = stored(db_url, ctx.run_id)
    fams, pts = first
    assert [f["batch_size"] for f in fams] == [1, 2, 4]
    modelled, batching, failed = fams
    assert modelled["model_name"] == MODEL.model.name and modelled["unmodelled"] is None
    assert modelled["capacity_rps"] == pytest.approx(800.0)
    assert (modelled["parallelism"], modelled["dynamic_batching"], modelled["profile_s"],
            modelled["slo_capacity_rps"], modelled["guided_start"], modelled["error"]) == \
        (C, False, 10.5, 700.0, 630.0, None)
    assert modelled["model"] == json.loads(json.dumps(MODEL.model.to_dict()))
    assert len(modelled["levels"]) == C + 1
    assert len(modelled["levels"][0]["quantiles_ms"]) == 401
    assert batching["model_name"] is None and "dynamic batching" in batching["unmodelled"]
    assert failed["model"] is None and failed["levels"] == []
    assert failed["error"] == "profiling failed: connection refused"
    at = [MODEL.at(r) for r in RATES]
    assert pts == [(0, pytest.approx(at[0].mean_ms), pytest.approx(at[0].p99_ms)),
                   (1, pytest.approx(at[1].mean_ms), pytest.approx(at[1].p99_ms)),
                   (2, None, None), (3, None, None)]
    # A retried collect writes the same rows once.
    STAGES["collect"](ctx, PLATFORM)
    assert stored(db_url, ctx.run_id) == first
    # A load stage retried without prediction leaves none of the earlier try's behind.
    load = json.loads(files.load.read_text())
    load.pop("predictions")
    write_json(files.load, load)
    STAGES["collect"](ctx, PLATFORM)
    assert stored(db_url, ctx.run_id)[0] == []


def test_a_load_json_without_predictions_still_collects(db_url, tmp_path):
    ctx, _ = write_run("predictions-none", tmp_path, db_url, predictions=False)
    collected = STAGES["collect"](ctx, PLATFORM)
    assert collected["status"] == "measured" and collected["points"] == 4
    assert stored(db_url, ctx.run_id) == ([], [(i, None, None) for i in range(4)])


def test_summary_and_report_show_predicted_vs_measured(db_url, tmp_path):
    from inferbench.reporting import run_summary

    ctx, _ = write_run("predictions-report", tmp_path / "runs", db_url, predictions=True)
    STAGES["collect"](ctx, PLATFORM)
    report = Path(STAGES["analyze"](ctx)["report"])  # built from the database
    with perfdb.engine(db_url).connect() as conn:
        summary = run_summary(conn, ctx.run_id)
        results = {r.point: r.latency_ms for r in conn.execute(
            select(schema.results.c.point, schema.results.c.latency_ms)
            .where(schema.results.c.run_id == ctx.run_id))}

    by_batch = {f["batch_size"]: f["prediction"] for f in summary["families"]}
    assert by_batch[1] == {"model_name": MODEL.model.name, "unmodelled": None,
                           "caveats": list(MODEL.model.caveats),
                           "capacity_rps": pytest.approx(800.0), "slo_capacity_rps": 700.0,
                           "guided_start": 630.0, "error": None}
    assert by_batch[2]["model_name"] is None and "dynamic batching" in by_batch[2]["unmodelled"]
    assert by_batch[4]["error"] == "profiling failed: connection refused"
    rows = {r["point"]: r for r in summary["results"]}
    assert rows[1]["predicted_p99_ms"] == pytest.approx(MODEL.at(RATES[1]).p99_ms)
    assert rows[2]["predicted_mean_ms"] is None

    html = report.read_text(encoding="utf-8")
    section = html[html.index('<section id="prediction">'):]
    section = section[:section.index("</section>")]
    assert "<h2>Predicted vs measured</h2>" in section
    assert MODEL.model.name in section
    assert "Not modelled: dynamic batching" in section
    assert "profiling failed: connection refused" in section
    assert section.count("data:image/png;base64,") == 1  # the modelled family's plot
    assert "highest loaded probe" not in section  # profiled without open-loop probes
    # The rung at 400 req/s: measured mean and p99 beside the prediction, and the errors.
    measured, predicted = results[1], MODEL.at(RATES[1])
    mean_err = 100 * (predicted.mean_ms - measured["mean"]) / measured["mean"]
    p99_err = 100 * (predicted.p99_ms - measured["p99"]) / measured["p99"]
    row = (f"<tr><td>1</td><td>400.000</td><td>{measured['mean']:.3f}</td>"
           f"<td>{predicted.mean_ms:.3f}</td><td>{mean_err:+.1f} %</td>"
           f"<td>{measured['p99']:.3f}</td><td>{predicted.p99_ms:.3f}</td>"
           f"<td>{p99_err:+.1f} %</td></tr>")
    assert row in section


def test_no_prediction_no_section(db_url, tmp_path):
    from inferbench.reporting import run_summary

    ctx, _ = write_run("predictions-absent", tmp_path / "runs", db_url, predictions=False)
    STAGES["collect"](ctx, PLATFORM)
    html = Path(STAGES["analyze"](ctx)["report"]).read_text()
    with perfdb.engine(db_url).connect() as conn:
        summary = run_summary(conn, ctx.run_id)
    assert all(f["prediction"] is None for f in summary["families"])
    assert 'id="prediction' not in html and "Predicted vs measured" not in html


def test_family_predictions_migration_goes_down_and_up(pg_home):
    from test_server_config_migration import migrate_to

    from inferbench.embedded.postgres import _server, database_url

    server = _server(pg_home)
    server.psql("DROP DATABASE IF EXISTS i15_migration;")
    server.psql("CREATE DATABASE i15_migration;")
    url = database_url(pg_home, "i15_migration")
    present = ("SELECT to_regclass('family_predictions') IS NOT NULL, count(*) FROM "
               "information_schema.columns WHERE table_name = 'points' AND column_name IN "
               "('predicted_mean_ms', 'predicted_p99_ms')")
    migrate_to(url, "head")
    engine = perfdb.engine(url)
    with engine.connect() as conn:
        assert tuple(conn.execute(text(present)).one()) == (True, 2)
    migrate_to(url, "i14_issuer_nice", down=True)
    with engine.connect() as conn:
        assert tuple(conn.execute(text(present)).one()) == (False, 0)
    migrate_to(url, "head")
    with engine.connect() as conn:
        assert tuple(conn.execute(text(present)).one()) == (True, 2)
    engine.dispose()


def test_the_migrations_build_the_schema_the_code_declares(db_url):
    """Alembic's autogenerate comparison finds nothing to add or drop between the
    migrated database and inferbench/perfdb/schema.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with perfdb.engine(db_url).connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": "inferbench_alembic_version"})
        diff = compare_metadata(context, schema.metadata)
    assert diff == []
