"""Server-side statistics: read a server's cumulative queue / compute counters over HTTP.

Both platforms that expose them answer `GET /v2/models/{name}/stats` with a `model_stats`
list: Triton's statistics extension (`inference_stats.queue`, `compute_input`,
`compute_infer`, `compute_output`, each {count, ns}; `success.count` requests) and the
project's FastAPI server (its batcher's `request_count`, `queue_ns`, `compute_ns`, named
after Triton's). A point's difference of two readings splits its latency into queue time,
compute time, and the rest (transmit, HTTP handling, client).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerStats:
    """Cumulative server-side counters as the platform reports them.

    Read before and after a measurement point; the difference splits the point's latency
    into queue time and compute time on the server (the rest is transmit and client time).
    """

    requests: int        # inference requests the server completed
    queue_ns: int        # total time those requests waited in the server's queue
    compute_ns: int      # total time spent computing them (input + infer + output)
    # Where the server pre- / post-processes (the FastAPI server's --preprocess /
    # --postprocess): total time decoding inputs and making labels; None: it does not.
    preprocess_ns: int | None = None
    postprocess_ns: int | None = None
    # The requests' whole time inside the server where it says so (Triton's success.ns,
    # the FastAPI server's and MLServer's REST stay, servers/stay_timer.py): queue, compute,
    # processing and the protocol handling around them; None: the platform does not say.
    total_ns: int | None = None
    # Where the server times it (stay_timer.py): the requests' total wait for their
    # bodies' bytes after their heads, i.e. their transmission's tail, kept out of total_ns.
    receive_ns: int | None = None
    # Where the two above cover only some of the requests (MLServer times its REST
    # requests, not its gRPC ones): how many they cover; None: all of them.
    timed_requests: int | None = None


COMPUTE_PARTS = ("compute_input", "compute_infer", "compute_output")


def parse_model_stats(payload: Mapping[str, Any]) -> ServerStats:
    """ServerStats from either dialect of the statistics answer."""
    (stats,) = payload["model_stats"][:1] or [None]
    if stats is None:
        raise ValueError("no model_stats in the answer")
    inference = stats.get("inference_stats")
    if inference is not None:  # Triton
        return ServerStats(
            requests=int(inference["success"]["count"]),
            queue_ns=int(inference["queue"]["ns"]),
            compute_ns=sum(int(inference[part]["ns"]) for part in COMPUTE_PARTS),
            total_ns=int(inference["success"]["ns"]))
    optional = {k: int(stats[k]) for k in ("preprocess_ns", "postprocess_ns") if k in stats}
    if "success_ns" in stats:
        optional["total_ns"] = int(stats["success_ns"])
    if "receive_ns" in stats:
        optional["receive_ns"] = int(stats["receive_ns"])
    return ServerStats(requests=int(stats["request_count"]), queue_ns=int(stats["queue_ns"]),
                       compute_ns=int(stats["compute_ns"]), **optional)


def read_model_stats(base_url: str, model_name: str, timeout_s: float = 5.0
                     ) -> ServerStats | None:
    """The counters now, or None when the server does not answer them (the point is then
    reported without a server-side split, never failed for it)."""
    url = f"{base_url.rstrip('/')}/v2/models/{model_name}/stats"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return parse_model_stats(json.loads(response.read()))
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return None


def read_metrics(metrics_url: str | None, parse: Callable[[str], ServerStats | None],
                 timeout_s: float = 5.0) -> ServerStats | None:
    """The counters a platform exports in Prometheus text on its metrics port
    (`{metrics_url}/metrics`), as `parse` reads them; None without a metrics URL, or when
    the server does not answer (the point is then reported without a split)."""
    if metrics_url is None:
        return None
    try:
        with urllib.request.urlopen(f"{metrics_url.rstrip('/')}/metrics",
                                    timeout=timeout_s) as response:
            return parse(response.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def split_ms(before: ServerStats | None, after: ServerStats | None) -> dict[str, Any]:
    """Per-request mean queue and compute time (ms) between two readings."""
    if before is None or after is None or after.requests <= before.requests:
        return {"server_requests": None, "server_queue_ms": None, "server_compute_ms": None}
    n = after.requests - before.requests

    def mean_ms(part: str) -> float | None:
        b, a = getattr(before, part), getattr(after, part)
        return None if a is None or b is None else (a - b) / n / 1e6

    split = {"server_requests": n, "server_queue_ms": mean_ms("queue_ns"),
             "server_compute_ms": mean_ms("compute_ns")}
    for part in ("preprocess", "postprocess"):  # only from a server that does them
        if getattr(after, f"{part}_ns") is not None:
            split[f"server_{part}_ms"] = mean_ms(f"{part}_ns")
    timed = (n if after.timed_requests is None or before.timed_requests is None
             else after.timed_requests - before.timed_requests)
    if timed != n:  # some requests were not timed (gRPC to MLServer): no mean of their stay
        return split
    total = mean_ms("total_ns")
    if total is not None:  # what the server spent outside its queue, model and pipeline
        inside = sum(v for k, v in split.items() if k.endswith("_ms") and v is not None)
        split["server_handling_ms"] = max(0.0, total - inside)
    receive = mean_ms("receive_ns")
    if receive is not None:
        split["server_receive_ms"] = receive
    return split
