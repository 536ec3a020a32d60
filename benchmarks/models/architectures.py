"""How fast do the well-known architectures serve on each local platform of this machine?

For each architecture and platform, one run through the real stages (generate, convert,
measure, collect, analyze) on an embedded PostgreSQL: a capacity search under Poisson load
(batch 1, one instance) for the highest rate within the SLO. Prints a Markdown table: the
capacity, p50 / p99 at the capacity rung, the lightest rung's p50, the rungs measured and
the wall time of the run, with the load average before and after.

    .venv/bin/python benchmarks/models/architectures.py \
        --architectures resnet50,mobilenet_v2,bert_base \
        --platforms onnxruntime,torchscript,openvino,triton
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: stage_runs
from stage_runs import load_average, run_through_stages, throwaway_home  # noqa: E402

from inferbench.spec import ModelSpec  # noqa: E402

# Per architecture: the SLO on p99 and where the search starts (a few times below the
# capacity this 2-vCPU host reaches, so the search climbs).
SLO_P99_MS = {"resnet50": 250.0, "mobilenet_v2": 50.0, "bert_base": 600.0}
START_RPS = {"resnet50": 4.0, "mobilenet_v2": 20.0, "bert_base": 1.5}


def spec_for(architecture: str, platform: str, rung_s: float) -> dict[str, Any]:
    formats = ["onnx", "torchscript"] if platform == "torchscript" else ["onnx"]
    return {
        "name": f"models-{architecture}-{platform}",
        "model": {"architecture": architecture, "seed": 0},
        "formats": formats, "platforms": [platform], "batch_sizes": [1],
        "workload": {"arrival": "poisson", "rate_rps": START_RPS[architecture], "seed": 1},
        "warmup_s": 3.0, "min_duration_s": rung_s, "min_requests": 40,
        # A cap only (a rung ends once it has min_duration_s and min_requests): long enough
        # for 40 requests at the lowest rate a guided search may start from, well below
        # START_RPS where the profile predicts a low SLO crossing (a rung cut short is not a
        # measurement).
        "max_duration_s": 120.0,
        "slo": {"percentile": 99.0, "latency_ms": SLO_P99_MS[architecture]},
        "ladder": {"mode": "search", "precision_pct": 10.0, "max_rungs": 12,
                   "max_family_s": 900},
    }


def rung_latency(summary: dict[str, Any], point: int | None) -> dict[str, float]:
    rows = [r for r in summary["results"] if r["point"] == point]
    return rows[0]["latency_ms"] if rows else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", default="resnet50,mobilenet_v2,bert_base")
    parser.add_argument("--platforms", default="onnxruntime,torchscript,openvino,triton")
    parser.add_argument("--rung-s", type=float, default=6.0, help="min_duration_s of a rung")
    args = parser.parse_args()

    rows = []
    started = time.monotonic()
    with throwaway_home("ib-models-"):
        print(f"load average before: {load_average()}")
        for architecture in args.architectures.split(","):
            for platform in args.platforms.split(","):
                t0 = time.monotonic()
                run = run_through_stages(f"models-{architecture}-{platform}",
                                         spec_for(architecture, platform, args.rung_s), platform)
                (family,) = run["summary"]["families"]
                rows.append((architecture, platform, family, run["summary"],
                             time.monotonic() - t0, run["measure_s"]))
    print(f"load average after: {load_average()}")
    print(f"total: {time.monotonic() - started:.0f} s\n")
    print(f"Batch 1, one instance, Poisson arrivals, rungs of >= {args.rung_s:g} s, search "
          "precision 10 %; SLO p99 <= " + ", ".join(
              f"{a} {SLO_P99_MS[a]:g} ms" for a in args.architectures.split(",")) + "\n")
    print("| architecture | input | platform | capacity at SLO (req/s) | p50 at capacity (ms) | "
          "p99 at capacity (ms) | p50 at the lowest rung measured (ms) | rungs | measure (s) | "
          "run (s) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for architecture, platform, family, summary, run_s, measure_s in rows:
        at_cap = rung_latency(summary, family["capacity_point"])
        lightest = min((r for r in summary["results"] if r["target_rate_rps"]),
                       key=lambda r: r["target_rate_rps"], default=None)
        capacity = family["capacity_rps"]
        bound = " (bound)" if family["search_cap_reached"] else ""
        inputs = ", ".join(f"{t.name} {t.dtype} {'x'.join(map(str, t.shape))}"
                           for t in ModelSpec(architecture=architecture).generated_inputs)
        print(f"| {architecture} | {inputs} | {platform} | "
              f"{'-' if capacity is None else f'{capacity:.1f}'}{bound} | "
              f"{at_cap.get('p50', float('nan')):.1f} | {at_cap.get('p99', float('nan')):.1f} | "
              f"{(lightest or {}).get('latency_ms', {}).get('p50', float('nan')):.1f} | "
              f"{family['n_rungs']} | {measure_s:.0f} | {run_s:.0f} |")


if __name__ == "__main__":
    main()
