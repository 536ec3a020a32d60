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


@pytest.mark.integration
def test_summary_best_is_the_recommenders_first_pick(inferbench_env, db_url, capsys):
    """Cheapest per request wins over highest throughput (the recommender's rule), and a
    point over the SLO is never the best, whatever its throughput."""
    from sqlalchemy import delete, insert

    from inferbench import perfdb
    from inferbench.perfdb import schema

    def result(platform, batch, rps, p99, usd_per_hour):
        return {"run_id": "cli-best", "platform": platform, "config_index": 0, "point": 0,
                "batch_size": batch, "n_ok": 100, "n_failed": 0, "duration_s": 10.0,
                "throughput_rps": rps, "late_send_pct": 0.0,
                "latency_ms": {"p50": p99 / 2, "p99": p99}, "meets_slo": p99 <= 50,
                "verdict": "VALID", "reasons": [], "usd_per_hour": usd_per_hour,
                "cost_per_million_usd": None if usd_per_hour is None
                else usd_per_hour / (rps * 3600) * 1e6}

    spec = example_spec().model_dump(mode="json")
    spec["slo"] = {"percentile": 99.0, "latency_ms": 50.0}
    with perfdb.engine(db_url).begin() as conn:
        conn.execute(delete(schema.runs).where(schema.runs.c.run_id == "cli-best"))
        conn.execute(insert(schema.runs).values(
            run_id="cli-best", name="cli-best", spec=spec, spec_hash="0" * 16,
            status="complete", verdict="VALID", verdict_reasons=[],
            created_at=datetime.now(UTC)))
        conn.execute(insert(schema.results), [
            result("onnxruntime", 1, 200.0, 10.0, 3.6),  # $5 per million
            result("triton", 1, 400.0, 12.0, 14.4),  # more rps, $10 per million
            result("torchserve", 8, 900.0, 80.0, 0.36)])  # cheapest, but over the SLO
    assert main(["summary", "cli-best", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["best"] == {"platform": "onnxruntime", "batch_size": 1,
                               "server_config": None}
    assert summary["throughput_rps"] == 200.0


def test_stage_rejects_unknown_stage(capsys):
    assert main(["stage", "deploy", "--run", "x"]) == 1
    assert "unknown stage 'deploy'" in capsys.readouterr().err
