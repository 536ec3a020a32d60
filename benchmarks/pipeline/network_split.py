"""Where does a request's time go over the loopback, a LAN, campus WiFi and 4G, per platform?

One run through the real stages per platform and network (generate, convert, measure,
collect, analyze; an embedded PostgreSQL in a throwaway home): the canonical generator's
residual CNN on 3 x 128 x 128 float32 inputs (a 196 KiB request, 40 bytes back), batch 1,
Poisson arrivals at one rate, through the emulated link of each named profile
(inferbench/network/profiles.py) or none. Prints a Markdown table of the mean latency and
its parts (transmit up / server queue / compute / transmit down: analysis/server_split.py),
the share the measured parts explain, the p99, and the run's time; draws the stacked bars
to benchmarks/pipeline/network_split.png. The load average is printed before and after.

    .venv/bin/python benchmarks/pipeline/network_split.py \
        --platforms onnxruntime,triton,torchscript --networks none,lan,wifi,4g
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: stage_runs
from sqlalchemy import select  # noqa: E402
from stage_runs import load_average, run_through_stages, throwaway_home  # noqa: E402

from analysis import plots  # noqa: E402
from analysis.server_split import latency_split  # noqa: E402
from inferbench.perfdb import schema  # noqa: E402

INPUT = [3, 128, 128]


def spec_for(platform: str, network: str, rate_rps: float, requests: int) -> dict[str, Any]:
    spec = {
        "name": f"net-{platform}-{network}",
        "model": {"family": "cnn", "depth": 2, "width": 16, "input_shape": INPUT, "seed": 0},
        "formats": ["onnx", "torchscript"] if platform == "torchscript" else ["onnx"],
        "platforms": [platform], "batch_sizes": [1],
        "workload": {"arrival": "poisson", "rate_rps": rate_rps, "seed": 1},
        "warmup_s": 3.0, "min_duration_s": 20.0, "min_requests": requests,
        "max_duration_s": 600.0,
        "slo": {"percentile": 99.0, "latency_ms": 1000.0},
    }
    if network != "none":
        spec["network"] = network
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platforms", default="onnxruntime,triton,torchscript")
    parser.add_argument("--networks", default="none,lan,wifi,4g")
    parser.add_argument("--rate-rps", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()

    rows, bars = [], []
    started = time.monotonic()
    with throwaway_home("ib-netsplit-"):
        print(f"load average before: {load_average()}")
        for platform in args.platforms.split(","):
            for network in args.networks.split(","):
                t0 = time.monotonic()
                run_id = f"net-{platform}-{network}"
                result = run_through_stages(
                    run_id, spec_for(platform, network, args.rate_rps, args.requests),
                    platform)
                with result["ctx"].db.connect() as conn:
                    point = conn.execute(select(schema.points).where(
                        schema.points.c.run_id == run_id)).mappings().one()
                (summary,) = result["summary"]["results"]
                split = latency_split({**point, "latency_ms": summary["latency_ms"]})
                rows.append((platform, network, summary, split, time.monotonic() - t0))
                if split is not None:
                    bars.append((f"{platform} {network}", split))
    print(f"load average after: {load_average()}")
    print(f"total: {time.monotonic() - started:.0f} s\n")
    print(f"Residual CNN (depth 2, width 16) on {'x'.join(map(str, INPUT))} float32, batch 1, "
          f"Poisson {args.rate_rps:g} req/s, >= {args.requests} requests a run\n")
    print("| platform | network | requests | verdict | mean (ms) | transmit up | queue | "
          "compute | transmit down | rest | measured parts explain | p99 (ms) | run (s) |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for platform, network, summary, split, run_s in rows:
        latency = summary["latency_ms"]
        if split is None:
            parts, explained = ["-"] * 5, "-"
        else:
            known = split.known_ms()
            parts = [ms(known[k]) for k in ("transmit up", "queue", "compute",
                                             "transmit down")] + [ms(split.rest_ms)]
            explained = f"{100 * (1 - split.rest_ms / split.mean_ms):.1f} %"
        print(f"| {platform} | {network} | {summary['n_ok']} | {summary['verdict']} | "
              f"{latency['mean']:.2f} | {' | '.join(parts)} | {explained} | "
              f"{latency['p99']:.2f} | {run_s:.0f} |")
    if bars:
        out = plots.latency_split_png(bars, Path(__file__).with_name("network_split.png"),
                                      title="Mean latency by part, per platform and network")
        print(f"\nstacked bars: {out}")


if __name__ == "__main__":
    main()
