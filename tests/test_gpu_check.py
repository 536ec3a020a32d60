"""scripts/gpu-check.sh's check (inferbench/gpu_check.py) on this GPU-less host: asked for
a GPU it refuses with the reason (exit 2); its dry run on the CPU goes through the same
server, load and sampler path and says the model ran on the CPU."""

from __future__ import annotations

import pytest

from inferbench import gpu_check

pytestmark = pytest.mark.integration


def test_asked_for_a_gpu_without_one_it_says_why_and_exits_2(capsys):
    assert gpu_check.main(["--device", "gpu:0", "--seconds", "1"]) == 2
    assert "sees 0 CUDA device(s)" in capsys.readouterr().err


def test_the_dry_run_on_the_cpu_measures_and_reports_the_cpu():
    result = gpu_check.check("cpu", seconds=1.0, concurrency=1)
    assert result["server_runs_on"] == "cpu" and result["n_ok"] > 0
    assert result["n_failed"] == 0 and result["latency_ms"]["p50"] > 0
    assert result["energy_j"] is None and result["energy_j_per_request"] is None
