"""How often the host itself stalls a running process (hypervisor steal, other tenants).

A busy loop reads the monotonic clock back to back; any gap longer than the threshold is
time the process could not run. On a shared VM this is the floor for late sends of any
load generator, so it is stored beside the late-send share to tell the two apart.
"""

from __future__ import annotations

import time


def host_stall_pct(threshold_ms: float = 1.0, duration_s: float = 1.0) -> float:
    """Percentage of `duration_s` spent in stalls longer than `threshold_ms`."""
    threshold_ns = int(threshold_ms * 1e6)
    start = prev = time.perf_counter_ns()
    end = start + int(duration_s * 1e9)
    stalled = 0
    while prev < end:
        now = time.perf_counter_ns()
        if now - prev > threshold_ns:
            stalled += now - prev
        prev = now
    return 100.0 * stalled / (prev - start)
