"""The CPU ceiling microbenchmark runs here on a tiny problem and reports positive ceilings."""

from __future__ import annotations

from inferbench.metrics.cpu_ceilings import measure_cpu_ceilings


def test_cpu_microbenchmark_gives_positive_ceilings():
    got = measure_cpu_ceilings(seconds=0.1, n=64, copy_mb=4)
    assert got["peak_gflops"] > 0 and got["mem_gbs"] > 0
    assert "matmul" in got["method"]
