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

SECTIONS = ("verdict", "results", "recommendations", "latency", "load", "cost", "roofline",
            "heatmaps", "quality", "leaderboard", "plots", "server-split")


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


def test_report_regenerates_from_postgres_with_every_section(sweep_run, inferbench_env,
                                                             tmp_path, capsys):
    assert cli.main(["report", "analysis-db-run", "--out", str(tmp_path / "run")]) == 0
    html = (tmp_path / "run" / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
    assert html.index('id="verdict"') < html.index('id="results"')
    assert "No server reported statistics" not in html  # the FastAPI server reports them
    assert "estimate_cpu_tdp" in html and "http://" not in html.split("<body>")[1]
    assert len(re.findall("data:image/png;base64,", html)) >= 5  # CDF, KDE, load, roofline, heat
    assert cli.main(["report", "--sweep", "analysis-db-sweep", "--out",
                     str(tmp_path / "sweep")]) == 0
    assert "sweep analysis-db-sweep" in (tmp_path / "sweep" / "report.html").read_text()
    assert cli.main(["report", "--sweep", "no-such-sweep"]) == 1
    assert "no run has sweep_id 'no-such-sweep'" in capsys.readouterr().err


def test_leaderboard_and_recommend_commands(sweep_run, inferbench_env, tmp_path, capsys):
    assert cli.main(["leaderboard", "--sort", "p99_ms"]) == 0
    assert "analysis-db-run" in capsys.readouterr().out
    assert cli.main(["leaderboard", "--sort", "bogus"]) == 1
    err = capsys.readouterr().err
    assert "unknown leaderboard column 'bogus'" in err and "p99_ms" in err
    assert cli.main(["leaderboard", "--html", str(tmp_path / "lb.html")]) == 0
    assert "<table>" in (tmp_path / "lb.html").read_text()
    capsys.readouterr()
    with perfdb.engine(os.environ["INFERBENCH_DB_URL"]).connect() as conn:
        eligible = conn.execute(text(
            "SELECT count(*) FROM leaderboard WHERE sweep_id = 'analysis-db-sweep' "
            "AND verdict = 'VALID' AND p99_ms <= 500")).scalar_one()
    # Whether a point is VALID depends on this shared VM's stalls (late sends): the
    # command must list exactly the eligible ones (up to 3), and exit 1 when there are none.
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
