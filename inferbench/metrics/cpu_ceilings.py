"""This machine's CPU roofline ceilings, measured by microbenchmark.

It runs on the host that served the benchmark (the analyze stage calls it), so it lives
beside the other host measurements rather than in the pure `analysis` package, whose
roofline functions take these numbers as inputs.
"""

from __future__ import annotations

import time

import numpy as np


def measure_cpu_ceilings(seconds: float = 0.6, n: int = 512,
                         copy_mb: int = 64) -> dict[str, float | str]:
    """This machine's CPU ceilings by microbenchmark: numpy float32 matmul GFLOP/s (best of
    repeats) and copy bandwidth GB/s (read + write bytes of np.copyto, best of repeats)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    best_mm = float("inf")
    a @ b  # warm-up: thread pool start, caches
    deadline = time.perf_counter() + seconds / 2
    repeats = 0
    while time.perf_counter() < deadline or repeats < 3:
        repeats += 1
        t0 = time.perf_counter()
        a @ b
        best_mm = min(best_mm, time.perf_counter() - t0)
    src = np.ones(copy_mb * 2**20 // 8, dtype=np.float64)
    dst = np.zeros_like(src)
    np.copyto(dst, src)  # fault every page in first: the timed copies measure bandwidth only
    best_cp = float("inf")
    deadline = time.perf_counter() + seconds / 2
    repeats = 0
    while time.perf_counter() < deadline or repeats < 3:
        repeats += 1
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best_cp = min(best_cp, time.perf_counter() - t0)
    return {"peak_gflops": 2 * n**3 / best_mm / 1e9,
            "mem_gbs": 2 * src.nbytes / best_cp / 1e9,
            "method": f"numpy float32 {n}x{n} matmul; np.copyto of {copy_mb} MiB (best of repeats)"}
