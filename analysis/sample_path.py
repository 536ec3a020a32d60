"""The queueing model replayed on the very arrival times of a measured open-loop point.

A few seconds of Poisson arrivals are an unlucky or lucky sample: at half the capacity the
mean of 200 requests moves by 10 % from one arrival sequence to the next, even on a server
of constant service time. Comparing a measured mean with the queue's stationary mean mixes
that sampling noise into whatever is inferred from it. Replaying the model on the point's
own arrivals (FIFO, c workers, the model's service times) gives the latency each request
would have had under the model; what is left between measured and replayed is the server's
own departure from the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def replayed_latencies_ms(arrivals_ms: Sequence[float], service_ms: Sequence[float],
                          overhead_ms: float, idle_ms: float | None = None) -> np.ndarray:
    """Each arrival's latency under the model: c = len(service_ms) FIFO workers; a request
    that starts while k - 1 others are in service takes D_k (D_c from c up); `overhead_ms`
    outside the queue. With `idle_ms`, an arrival that finds every worker idle takes that
    instead of overhead + D_1 (its worker is still busy for D_1 only: the model treats the
    wake-up as latency, not work)."""
    c = len(service_ms)
    free_at = [float("-inf")] * c      # when each worker is next free
    out = np.empty(len(arrivals_ms))
    for n, arrival in enumerate(arrivals_ms):
        empty = max(free_at) <= arrival
        first = min(range(c), key=free_at.__getitem__)
        start = max(arrival, free_at[first])
        busy = sum(t > start for t in free_at)
        service = service_ms[min(busy, c - 1)]
        free_at[first] = start + service
        if empty and idle_ms is not None:
            out[n] = idle_ms
        else:
            out[n] = start - arrival + service + overhead_ms
    return out
