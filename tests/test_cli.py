"""The CLI's edge: bad input exits 1 with the field-named error, good input exits 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_stage_rejects_unknown_stage(capsys):
    assert main(["stage", "deploy", "--run", "x"]) == 1
    assert "unknown stage 'deploy'" in capsys.readouterr().err
