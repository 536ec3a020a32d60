"""What does padding cost BERT-Base when requests vary in length?

One run through the real stages per platform and padding (generate, convert, measure,
collect, analyze; an embedded PostgreSQL in a throwaway home): BERT-Base at sequence 128,
each request's length drawn from a lognormal (median 40 tokens, sigma 0.6, cut to 8..128),
Poisson arrivals at one rate, batch 1. Prints a Markdown table of latency per length bucket
for each padding (max: every request padded to 128; buckets: up to 32 / 64 / 96 / 128; none:
each sent at its own length), with the run's time and the load average before and after.

    .venv/bin/python benchmarks/models/variable_length.py \
        --runs onnxruntime:max,onnxruntime:buckets,onnxruntime:none,triton:none
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

from inferbench.perfdb import schema  # noqa: E402

SEQUENCE = 128
LENGTHS = {"distribution": "lognormal", "median": 40, "sigma": 0.6, "min": 8, "max": SEQUENCE}
BUCKETS = [32, 64, 96, 128]  # the same edges as the report's quartiles for the others


def spec_for(platform: str, padding: str, rate_rps: float, requests: int) -> dict[str, Any]:
    lengths = {**LENGTHS, "padding": padding}
    if padding == "buckets":
        lengths["buckets"] = BUCKETS
    return {
        "name": f"varlen-{platform}-{padding}",
        "model": {"architecture": "bert_base", "input_shape": [SEQUENCE], "seed": 0},
        "formats": ["onnx", "torchscript"] if platform == "torchscript" else ["onnx"],
        "platforms": [platform], "batch_sizes": [1],
        "workload": {"arrival": "poisson", "rate_rps": rate_rps, "seed": 1,
                     "sequence_length": lengths},
        "warmup_s": 5.0, "min_duration_s": 20.0, "min_requests": requests,
        "max_duration_s": 600.0,
        "slo": {"percentile": 99.0, "latency_ms": 1000.0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="onnxruntime:max,onnxruntime:buckets,"
                        "onnxruntime:none,triton:none", help="platform:padding, comma-separated")
    parser.add_argument("--rate-rps", type=float, default=1.5)
    parser.add_argument("--requests", type=int, default=240)
    args = parser.parse_args()

    rows = []
    started = time.monotonic()
    with throwaway_home("ib-varlen-"):
        print(f"load average before: {load_average()}")
        for run in args.runs.split(","):
            platform, padding = run.split(":")
            t0 = time.monotonic()
            result = run_through_stages(f"varlen-{platform}-{padding}",
                                        spec_for(platform, padding, args.rate_rps,
                                                 args.requests), platform)
            with result["ctx"].db.connect() as conn:
                facts = conn.execute(select(schema.runs.c.analysis).where(
                    schema.runs.c.run_id == result["ctx"].run_id)).scalar_one()
            (point,) = result["summary"]["results"]
            rows.append((platform, padding, point, facts["latency_by_length"],
                         time.monotonic() - t0))
    print(f"load average after: {load_average()}")
    print(f"total: {time.monotonic() - started:.0f} s\n")
    print(f"BERT-Base, sequence {SEQUENCE}, batch 1, Poisson {args.rate_rps:g} req/s, "
          f"lengths lognormal (median {LENGTHS['median']}, sigma {LENGTHS['sigma']}, "
          f"{LENGTHS['min']}..{LENGTHS['max']}), >= {args.requests} requests a run\n")
    print("| platform | padding | length | requests | p50 (ms) | p99 (ms) | sent padded to "
          "(mean) | all requests p50 / p99 (ms) | run (s) |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|")
    for platform, padding, point, buckets, run_s in rows:
        overall = f"{point['latency_ms']['p50']:.1f} / {point['latency_ms']['p99']:.1f}"
        for b in buckets:
            p99 = "too few" if b["p99_ms"] is None else f"{b['p99_ms']:.1f}"
            print(f"| {platform} | {padding} | {b['length_from']}-{b['length_to']} | "
                  f"{b['n_ok']} | {b['p50_ms']:.1f} | {p99} | {b['mean_padded_len']:.0f} | "
                  f"{overall} | {run_s:.0f} |")


if __name__ == "__main__":
    main()
