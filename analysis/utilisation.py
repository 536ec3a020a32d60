"""Resource use while a point was measured: the sampler's CPU, memory and GPU readings
(table resource_samples) within the point's measurement window, per source.

Sources: `server` (the serving process tree), `client` (the load generator) and `gpuN`
(NVML, where a GPU is present). CPU is in percent of one core (200 % = two cores busy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _stat(values: list, how) -> float | None:
    values = [v for v in values if v is not None]
    return float(how(values)) if values else None


def point_utilisation(samples: Sequence[dict], started_ns: int, ended_ns: int) -> dict:
    """Per source, over the samples within [started_ns, ended_ns]: mean and max CPU %, max
    RSS, mean GPU utilisation and max GPU memory; and the sample count."""
    out: dict[str, dict] = {}
    for source in sorted({s["source"] for s in samples}):
        inside = [s for s in samples
                  if s["source"] == source and started_ns <= s["t_ns"] <= ended_ns]
        if not inside:
            continue
        out[source] = {
            "n_samples": len(inside),
            "cpu_pct_mean": _stat([s.get("cpu_pct") for s in inside], np.mean),
            "cpu_pct_max": _stat([s.get("cpu_pct") for s in inside], np.max),
            "rss_bytes_max": _stat([s.get("rss_bytes") for s in inside], np.max),
            "gpu_util_pct_mean": _stat([s.get("gpu_util_pct") for s in inside], np.mean),
            "gpu_mem_bytes_max": _stat([s.get("gpu_mem_bytes") for s in inside], np.max),
        }
    return out
