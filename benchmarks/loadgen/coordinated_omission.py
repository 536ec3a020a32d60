"""Coordinated omission: the reference server stalls once for 500 ms; what does each tool's
tail show?

Poisson load at 100 req/s for 15 s on the reference server (1 worker, 2 ms service), which
stalls once, 5 s after its first request, for 500 ms. About 50 requests arrive during the
stall and wait up to 500 ms: 0.5 s x 100 req/s out of ~1500, i.e. ~3.3 % of the requests,
so an honest p99 lies inside the stall (~350 ms: the 1 % slowest of those waits), and the
p99.9 near 500 ms. A tool that only sends when its previous answer came back (closed loop)
sends few requests into the stall and hides it.

    .venv/bin/python benchmarks/loadgen/coordinated_omission.py
"""

from __future__ import annotations

import argparse

from common import load_average, reference_server
from peers import one, require


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    require("locust")
    require("mlperf_loadgen")
    print(f"load average before: {load_average()}")
    print("| tool | how it loads | requests | p99 (ms) | p99.9 (ms) | max (ms) |")
    print("|---|---|---:|---:|---:|---:|")
    how = {"inferbench": "open loop, Poisson, latency from the scheduled send",
           "mlperf-loadgen": "open loop (Server scenario), latency from its schedule",
           "locust": "open-loop approximation (per-user Poisson schedules), from schedule",
           "locust-closed": "10 users, constant_throughput pacing, latency from the send"}
    for tool in ("inferbench", "mlperf-loadgen", "locust", "locust-closed"):
        # A fresh server per tool: the stall comes 5 s after that tool's first request
        # (the warm-up of the tools that have one included).
        with reference_server(2.0, 1, "--stall-at-s", "5", "--stall-ms", "500") as server:
            r = one(tool, server.infer_url, args.rate, args.duration, 1)
        if "error" in r:
            print(f"| {tool} | error: {r['error']} | | | | |", flush=True)
            continue

        def ms(key: str, r: dict = r) -> str:
            return "-" if r.get(key) is None else f"{r[key]:.1f}"

        print(f"| {tool} | {how[tool]} | {r['n']} | {ms('p99_ms')} | {ms('p999_ms')} | "
              f"{ms('max_ms')} |", flush=True)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
