"""Open-loop arrival schedules, drawn lazily from a logged seed.

A schedule is an iterator of offsets in nanoseconds from the start of a phase; the
issuer sends each request at its offset whatever happened to the previous ones, which is
what makes the load open-loop (and latency measurable from the scheduled time).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def poisson_offsets_ns(rate_rps: float, seed: int, chunk: int = 4096) -> Iterator[int]:
    """Arrival offsets of a Poisson process: i.i.d. exponential gaps with mean 1/rate."""
    if rate_rps <= 0:
        raise ValueError(f"rate_rps must be > 0, got {rate_rps!r}")
    rng = np.random.default_rng(seed)
    t = 0.0
    while True:
        # Drawn in chunks: one numpy call per few thousand arrivals keeps the issuer cheap.
        gaps = rng.exponential(1e9 / rate_rps, size=chunk)
        for gap in gaps:
            t += gap
            yield int(t)
