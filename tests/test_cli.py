"""The CLI's edge: bad input exits 1 with the field-named error, good input exits 0."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inferbench.cli import main
from inferbench.spec import example_spec

ROOT = Path(__file__).resolve().parent.parent


def test_validate_accepts_the_examples(capsys):
    # sweep-*.json are sweep files (a grid of specs), checked by tests/scheduling/test_sweep.py
    specs = [p for p in sorted((ROOT / "examples").glob("*.json"))
             if not p.name.startswith("sweep-")]
    assert specs
    for path in specs:
        assert main(["validate", str(path)]) == 0, path
        assert "valid" in capsys.readouterr().out


def test_validate_rejects_bad_spec_with_exit_1(tmp_path):
    data = example_spec().model_dump(mode="json")
    data["batch_sizes"] = [0]
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(data))
    proc = subprocess.run([sys.executable, "-m", "inferbench", "validate", str(spec)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "batch_sizes [0]" in proc.stderr and "1..4096" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_missing_file(capsys):
    assert main(["validate", "/nonexistent/spec.json"]) == 1
    assert "does not exist" in capsys.readouterr().err


def _store_run(db_url: str, run_id: str, families: dict, slo_ms: float = 50.0) -> None:
    """A finished run straight into the results database: per family (platform,
    config_index, label, batch) its ladder of (rate, achieved rps, p99, usd_per_hour)."""
    from sqlalchemy import delete, insert

    from inferbench import perfdb
    from inferbench.perfdb import schema

    spec = example_spec().model_dump(mode="json")
    spec["slo"] = {"percentile": 99.0, "latency_ms": slo_ms}
    points, results, configs = [], [], {}
    for (platform, config_index, label, batch), ladder in families.items():
        configs[(platform, config_index)] = label
        for rate, rps, p99, usd_per_hour in ladder:
            key = {"run_id": run_id, "platform": platform, "config_index": config_index,
                   "point": len([p for p in points if p["platform"] == platform
                                 and p["config_index"] == config_index])}
            points.append({**key, "batch_size": batch, "arrival": "poisson",
                           "target_rate_rps": rate, "started_ns": 0, "ended_ns": 10**10,
                           "stop_reason": "min_reached", "complete": True})
            results.append({**key, "batch_size": batch, "n_ok": int(rps * 10), "n_failed": 0,
                            "duration_s": 10.0, "throughput_rps": rps, "late_send_pct": 0.0,
                            "latency_ms": {"p50": p99 / 2, "p99": p99},
                            "meets_slo": p99 <= slo_ms, "verdict": "VALID", "reasons": [],
                            "usd_per_hour": usd_per_hour,
                            "cost_per_million_usd": usd_per_hour / (rps * 3600) * 1e6})
    with perfdb.engine(db_url).begin() as conn:
        conn.execute(delete(schema.runs).where(schema.runs.c.run_id == run_id))
        conn.execute(insert(schema.runs).values(
            run_id=run_id, name=run_id, spec=spec, spec_hash="0" * 16, status="complete",
            verdict="VALID", verdict_reasons=[], report_path="/r/report.html",
            created_at=datetime.now(UTC)))
        conn.execute(insert(schema.server_configs), [
            {"run_id": run_id, "platform": p, "config_index": c, "label": label, "knobs": {}}
            for (p, c), label in configs.items()])
        conn.execute(insert(schema.points), points)
        conn.execute(insert(schema.results), results)


@pytest.mark.integration
def test_summary_answers_with_the_highest_capacity_at_slo(inferbench_env, db_url, capsys):
    """Per family its capacity and bracket, and one answer: the family carrying the most
    inferences per second within the SLO, not the point that measured the most."""
    _store_run(db_url, "cli-capacity", {
        # 400 req/s holds; 800 misses the SLO though it measured the most requests/s.
        ("onnxruntime", 0, "db=off,inst=1", 1): [(200.0, 200.0, 10.0, 3.6),
                                                  (400.0, 399.0, 20.0, 3.6),
                                                  (800.0, 790.0, 80.0, 3.6)],
        # 100 req/s x batch 8 = 800 items/s; 200 req/s: the server fell behind.
        ("onnxruntime", 1, "db=on,inst=2", 8): [(50.0, 50.0, 15.0, 3.6),
                                                 (100.0, 99.5, 30.0, 3.6),
                                                 (200.0, 150.0, 40.0, 3.6)],
        # Nothing within the SLO.
        ("triton", 0, "db=off,inst=1", 1): [(50.0, 50.0, 70.0, 3.6)]})
    assert main(["summary", "cli-capacity", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["answer"] == ("Best within p99 <= 50 ms: onnxruntime b8 [db=on,inst=2] - 100 "
                           "req/s (800 items/s), $10.00 per million requests ($1.25 per million "
                           "inferences)")
    assert s["slo"] == {"percentile": 99.0, "latency_ms": 50.0}
    # $3.6/h at 100 req/s: $10 per million requests, $1.25 per million inferences.
    assert s["best"] == {"label": "onnxruntime b8 [db=on,inst=2]", "platform": "onnxruntime",
                         "batch_size": 8, "server_config": "db=on,inst=2", "config_index": 1,
                         "capacity_rps": 100.0, "capacity_items_per_s": 800.0,
                         "cost_per_million_usd": pytest.approx(10.0, rel=1e-12),
                         "cost_per_million_items_usd": pytest.approx(1.25, rel=1e-12),
                         "ranked_by": "capacity at SLO in items/s"}
    assert s["throughput_rps"] == 99.5 and s["latency_ms"]["p99"] == 30.0
    fams = {f["label"]: f for f in s["families"]}
    assert {k: (f["rank"], f["n_rungs"], f["capacity_rps"], f["capacity_items_per_s"],
                f["search_cap_reached"]) for k, f in fams.items()} == {
        "onnxruntime b1 [db=off,inst=1]": (2, 3, 400.0, 400.0, False),
        "onnxruntime b8 [db=on,inst=2]": (1, 3, 100.0, 800.0, False),
        "triton b1 [db=off,inst=1]": (None, 1, None, None, False)}
    assert fams["onnxruntime b1 [db=off,inst=1]"]["capacity_bracket"] == {
        "offered": 800.0, "point": 2, "verdict": "VALID", "reason": "p99 80.0 ms > 50 ms",
        "latency_ms": 80.0, "achieved_rps": 790.0}
    assert fams["onnxruntime b8 [db=on,inst=2]"]["capacity_bracket"]["reason"] == \
        "achieved 150.0 of 200 req/s offered (< 95%)"
    assert fams["triton b1 [db=off,inst=1]"]["capacity_bracket"] is None
    assert fams["triton b1 [db=off,inst=1]"]["answer"] == \
        "no load tried meets p99 <= 50 ms; the lowest (50 req/s) had p99 70.0 ms"
    # Every point keeps its verdict, its SLO flag and whether it holds as a rung: apart.
    top = next(r for r in s["results"] if r["target_rate_rps"] == 800.0)
    assert (top["verdict"], top["meets_slo"], top["rung_holds"], top["rung_reason"]) == \
        ("VALID", False, False, "p99 80.0 ms > 50 ms")
    assert main(["summary", "cli-capacity"]) == 0
    text = capsys.readouterr().out
    assert s["answer"] in text and "report: /r/report.html" in text
    assert "search cap reached" not in text and "800 req/s: p99 80.0 ms > 50 ms" in text


@pytest.mark.integration
def test_summary_without_an_answer_says_so(inferbench_env, db_url, capsys):
    _store_run(db_url, "cli-none", {
        ("onnxruntime", 0, "db=off,inst=1", 1): [(10.0, 10.0, 72.3, 3.6),
                                                  (20.0, 20.0, 90.0, 3.6)]})
    assert main(["summary", "cli-none", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["best"] is None and s["throughput_rps"] is None
    assert s["answer"] == ("no configuration meets p99 <= 50 ms; the lowest load tried "
                           "(10 req/s) had p99 72.3 ms (onnxruntime b1 [db=off,inst=1])")


def test_stage_rejects_unknown_stage(capsys):
    assert main(["stage", "deploy", "--run", "x"]) == 1
    assert "unknown stage 'deploy'" in capsys.readouterr().err
