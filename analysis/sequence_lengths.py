"""Latency by sequence length: a variable-length point's requests grouped into length
buckets, each with its count, median and p99 and the sequence axis it was sent with.

Latency runs from each request's scheduled send, as everywhere in the results. A bucket
(lo, hi] holds the requests whose longest sample is in it; its p99 is given only from
MIN_P99_REQUESTS requests on (the 99th percentile of fewer is one of its few largest
values, not a tail).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from analysis.percentiles import exact_percentile
from analysis.summary import request_latencies_ms

MIN_P99_REQUESTS = 100


def latency_by_length(arrays: Mapping[str, np.ndarray], edges: Sequence[int]) -> list[dict]:
    """One row per length bucket (lo, hi] of `edges` (ascending; the first bucket starts
    at 1) that holds a successful request of the point's records."""
    ok, latency_ms = request_latencies_ms(arrays)
    lengths = np.asarray(arrays["seq_len"])
    padded = np.asarray(arrays["padded_len"])
    rows, lo = [], 0
    for hi in edges:
        inside = ok & (lengths > lo) & (lengths <= hi)
        n = int(inside.sum())
        if n:
            values = np.sort(latency_ms[inside])
            rows.append({"length_from": lo + 1, "length_to": int(hi), "n_ok": n,
                         "p50_ms": exact_percentile(values, 50, assume_sorted=True),
                         "p99_ms": exact_percentile(values, 99, assume_sorted=True)
                         if n >= MIN_P99_REQUESTS else None,
                         "mean_padded_len": float(padded[inside].mean())})
        lo = hi
    return rows
