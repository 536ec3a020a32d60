"""Analysis on a real PostgreSQL after a real (tiny) run: the leaderboard view, the
report regenerated from the database alone, a sweep report, and the analysis commands."""

from __future__ import annotations

import json
import os
import re

import pytest
from sqlalchemy import select, text
from test_pipeline import SPEC, run_stages

from inferbench import cli, perfdb
from inferbench.perfdb import schema

pytestmark = pytest.mark.integration

SECTIONS = ("answer", "verdict", "results", "recommendations", "latency", "load", "cost",
            "roofline", "heatmaps", "quality", "leaderboard", "plots", "server-split",
            "predictability", "utilisation")


@pytest.fixture(scope="module")
def sweep_run(pg_home, db_url):
    mp = pytest.MonkeyPatch()
    mp.setenv("INFERBENCH_HOME", str(pg_home))
    mp.setenv("INFERBENCH_DB_URL", db_url)
    spec = {**SPEC, "name": "analysis-db", "sweep_id": "analysis-db-sweep",
            "batch_sizes": [1, 2], "formats": ["onnx"]}
    summary = run_stages("analysis-db-run", spec)
    yield summary
    mp.undo()


def test_analyze_stores_sweep_cost_energy_quality_and_roofline(sweep_run, db_url):
    with perfdb.engine(db_url).connect() as conn:
        run = conn.execute(select(schema.runs).where(
            schema.runs.c.run_id == "analysis-db-run")).one()._mapping
        view = conn.execute(text("SELECT * FROM leaderboard WHERE run_id = 'analysis-db-run' "
                                 "ORDER BY batch_size")).all()
    assert run["sweep_id"] == "analysis-db-sweep" and run["hardware"].startswith("cpu:")
    assert run["quality_ok"] is True, run["quality_reasons"]
    assert run["analysis"]["model_cost"]["flops"] > 0
    assert run["analysis"]["cpu_ceilings"]["peak_gflops"] > 0
    assert [v.batch_size for v in view] == [1, 2]
    for v in view:
        assert v.platform == "onnxruntime" and v.family == "cnn" and v.depth == 1
        assert v.items_per_s == pytest.approx(v.throughput_rps * v.batch_size)
        assert 0 < v.p50_ms <= v.p99_ms
        assert v.energy_method == "estimate_cpu_tdp"  # no GPU, no RAPL here
        if v.usd_per_hour is not None:  # this host's vCPU count may have no price row
            assert v.cost_per_million_usd == pytest.approx(
                v.usd_per_hour / (v.throughput_rps * 3600) * 1e6)


def test_analyze_stores_each_familys_capacity_as_the_summary_computes_it(sweep_run, db_url):
    """The stored rows, the summary and the analyze result give one answer. Whether a rung
    holds depends on this shared VM (late sends, a 2 s rung's Poisson count), so the test
    checks that they agree, not what they say."""
    from analysis.capacity import capacities
    from inferbench.perfdb import queries
    from inferbench.reporting import run_summary

    with perfdb.engine(db_url).connect() as conn:
        stored = queries.capacity_rows(conn, run_ids=["analysis-db-run"])
        records = queries.point_records(conn, run_ids=["analysis-db-run"])
        summary = run_summary(conn, "analysis-db-run")
    assert [(c["platform"], c["batch_size"], c["n_rungs"]) for c in stored] == \
        [("onnxruntime", 1, 1), ("onnxruntime", 2, 1)]  # one point per family: one rung
    again = capacities(records, slo_percentile=99, slo_ms=500)
    for row, fam, shown in zip(stored, again, summary["families"], strict=True):
        assert row["capacity_rps"] == fam.capacity_rps == shown["capacity_rps"]
        assert row["capacity_bracket"] is None  # a single rung has nothing above it
        assert row["search_cap_reached"] == (fam.capacity is not None)
        assert row["answer"] == fam.statement() == shown["answer"]
        assert row["server_config"] == fam.server_config == "db=off,inst=1"
    assert sweep_run["answer"] == summary["answer"]
    assert sweep_run["families"] == 2


def test_report_regenerates_from_postgres_with_every_section(sweep_run, inferbench_env,
                                                             tmp_path, capsys):
    assert cli.main(["report", "analysis-db-run", "--out", str(tmp_path / "run")]) == 0
    html = (tmp_path / "run" / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
    assert html.index('id="answer"') < html.index('id="verdict"') < html.index('id="results"')
    assert "No server reported statistics" not in html  # the FastAPI server reports them
    # A point of a few hundred requests says what the far tail needs instead of a number.
    assert "not enough requests (needs 3,688)" in html
    assert "estimate_cpu_tdp" in html and "http://" not in html.split("<body>")[1]
    # CDF, KDE, load, roofline, resource use; one depth makes no grid for a heat map
    assert len(re.findall("data:image/png;base64,", html)) >= 5
    assert "No grid to show" in html
    assert cli.main(["report", "--sweep", "analysis-db-sweep", "--out",
                     str(tmp_path / "sweep")]) == 0
    assert "sweep analysis-db-sweep" in (tmp_path / "sweep" / "report.html").read_text()
    assert cli.main(["report", "--sweep", "no-such-sweep"]) == 1
    assert "no run has sweep_id 'no-such-sweep'" in capsys.readouterr().err


def test_leaderboard_and_recommend_commands(sweep_run, inferbench_env, tmp_path, capsys):
    assert cli.main(["leaderboard", "--points", "--sort", "p99_ms"]) == 0
    assert "analysis-db-run" in capsys.readouterr().out
    assert cli.main(["leaderboard"]) == 0  # families, by the recommender's rule
    out = capsys.readouterr().out
    assert "capacity_items_per_s" in out and "analysis-db-run" in out
    assert "server_cpu_pct" in out and "server_rss_mb" in out  # resource use at capacity
    from inferbench.perfdb import queries

    with perfdb.engine(os.environ["INFERBENCH_DB_URL"]).connect() as conn:
        _, families = queries.capacity_leaderboard_rows(conn)
    held = [f for f in families if f["run_id"] == "analysis-db-run" and f["capacity_rps"]]
    assert all(f["server_cpu_pct"] > 0 and f["server_rss_mb"] > 10 for f in held), held
    assert cli.main(["leaderboard", "--sort", "bogus"]) == 1
    err = capsys.readouterr().err
    assert "unknown leaderboard column 'bogus'" in err and "capacity_rps" in err
    assert cli.main(["leaderboard", "--html", str(tmp_path / "lb.html")]) == 0
    assert "<table>" in (tmp_path / "lb.html").read_text()
    capsys.readouterr()
    with perfdb.engine(os.environ["INFERBENCH_DB_URL"]).connect() as conn:
        eligible = conn.execute(text(
            "SELECT count(*) FROM capacity_leaderboard WHERE sweep_id = 'analysis-db-sweep' "
            "AND capacity_rps IS NOT NULL AND slo_ms = 500")).scalar_one()
    # Whether a rung holds depends on this shared VM's stalls (late sends) and on a short
    # rung's Poisson count: the command must list exactly the families analyze found a
    # capacity for under the same SLO (up to 3), and exit 1 when there are none.
    rc = cli.main(["recommend", "--slo-ms", "500", "--sweep", "analysis-db-sweep", "--json"])
    recs = json.loads(capsys.readouterr().out)
    assert (rc, len(recs)) == ((0, min(eligible, 3)) if eligible else (1, 0))
    assert all(r["latency_ms"] <= 500 and r["verdict"] == "VALID" for r in recs)
    assert cli.main(["recommend", "--slo-ms", "0.001", "--sweep", "analysis-db-sweep"]) == 1


def test_points_carry_the_servers_queue_and_compute_time(sweep_run, db_url):
    """The load stage read the server's counters around each point: every measured request
    (and nothing of the warm-up) is in them, and compute time is positive."""
    p, r = schema.points, schema.results
    with perfdb.engine(db_url).connect() as conn:
        rows = conn.execute(select(p.c.point, p.c.server_requests, p.c.server_queue_ms,
                                   p.c.server_compute_ms, r.c.n_ok, r.c.latency_ms)
                            .join(r, (r.c.run_id == p.c.run_id) & (r.c.point == p.c.point)
                                  & (r.c.platform == p.c.platform))
                            .where(p.c.run_id == "analysis-db-run")).all()
    assert len(rows) == 2
    for row in rows:
        # Requests still in flight when the point's reading was taken count in the next
        # reading; at most the concurrency of an open loop at 40 rps is a handful.
        assert abs(row.server_requests - row.n_ok) <= 5, row
        assert row.server_queue_ms >= 0 and row.server_compute_ms > 0
        assert row.server_queue_ms + row.server_compute_ms <= row.latency_ms["mean"]


def _capacity_row(platform: str, batch: int, capacity_rps: float | None, **extra) -> dict:
    bracket = None if capacity_rps is None else {
        "offered": capacity_rps * 1.25, "point": 3, "verdict": "VALID",
        "reason": "p99 80.0 ms > 50 ms", "latency_ms": 80.0, "achieved_rps": capacity_rps}
    return {"platform": platform, "config_index": 0, "server_config": "db=off,inst=1",
            "batch_size": batch, "open_loop": True, "slo_percentile": 99.0, "slo_ms": 50.0,
            "n_rungs": 4, "capacity_point": 2, "capacity_offered": capacity_rps,
            "capacity_rps": capacity_rps,
            "capacity_items_per_s": None if capacity_rps is None else capacity_rps * batch,
            "latency_at_slo_ms": 30.0, "search_cap_reached": False,
            "capacity_bracket": bracket, "usd_per_hour": 0.36,
            "cost_per_million_usd": 1.25, "cost_per_million_items_usd": 1.25 / batch,
            "energy_j_per_request": 0.5, "energy_method": "estimate_cpu_tdp",
            "answer": "capacity 80 req/s", "label": "not a column", **extra}


def test_capacities_round_trip_and_replace_idempotently(db_url):
    """writer.replace_capacities / queries.capacity_rows and the capacity_leaderboard view on
    a real PostgreSQL: what goes in comes back, JSON bracket included, and a second write
    replaces the first."""
    from datetime import UTC, datetime

    from sqlalchemy import delete, insert

    from inferbench.perfdb import queries, writer

    run_id = "capacity-round-trip"
    with perfdb.engine(db_url).begin() as conn:
        conn.execute(delete(schema.runs).where(schema.runs.c.run_id == run_id))
        conn.execute(insert(schema.runs).values(
            run_id=run_id, name=run_id, spec={}, spec_hash="0" * 16, status="complete",
            verdict="VALID", created_at=datetime.now(UTC)))
        conn.execute(insert(schema.server_configs).values(
            run_id=run_id, platform="triton", config_index=0, label="db=off,inst=1",
            knobs={}))
        writer.replace_capacities(conn, run_id, [_capacity_row("triton", 8, 80.0),
                                                 _capacity_row("onnxruntime", 1, None)])
        writer.replace_capacities(conn, run_id, [_capacity_row("triton", 8, 80.0)])
    with perfdb.engine(db_url).connect() as conn:
        rows = queries.capacity_rows(conn, run_ids=[run_id])
        columns, board = queries.capacity_leaderboard_rows(conn)
    expected = {k: v for k, v in _capacity_row("triton", 8, 80.0).items() if k != "label"}
    assert rows == [{"run_id": run_id, **expected}]
    assert rows[0]["capacity_bracket"]["reason"] == "p99 80.0 ms > 50 ms"
    mine = [r for r in board if r["run_id"] == run_id]
    assert len(mine) == 1 and {"capacity_rps", "bracket_offered", "server_config",
                               "run_verdict"} <= set(columns)
    assert (mine[0]["capacity_items_per_s"], mine[0]["bracket_offered"],
            mine[0]["bracket_reason"], mine[0]["server_config"]) == \
        (640.0, 100.0, "p99 80.0 ms > 50 ms", "db=off,inst=1")
    with perfdb.engine(db_url).begin() as conn:  # the run's rows go with the run
        conn.execute(delete(schema.runs).where(schema.runs.c.run_id == run_id))
        assert queries.capacity_rows(conn, run_ids=[run_id]) == []


def test_capacities_migration_goes_down_and_up(pg_home):
    from test_server_config_migration import migrate_to

    from inferbench.embedded.postgres import _server, database_url

    server = _server(pg_home)
    server.psql("DROP DATABASE IF EXISTS i13_migration;")
    server.psql("CREATE DATABASE i13_migration;")
    url = database_url(pg_home, "i13_migration")
    migrate_to(url, "head")
    engine = perfdb.engine(url)
    present = "SELECT to_regclass('capacities') IS NOT NULL, " \
              "to_regclass('capacity_leaderboard') IS NOT NULL"
    with engine.connect() as conn:
        assert conn.execute(text(present)).one() == (True, True)
    migrate_to(url, "i3d_version_text", down=True)
    with engine.connect() as conn:
        assert conn.execute(text(present)).one() == (False, False)
    migrate_to(url, "head")
    with engine.connect() as conn:
        assert conn.execute(text(present)).one() == (True, True)
    engine.dispose()
