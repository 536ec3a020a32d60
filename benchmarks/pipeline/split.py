"""Where does a request's time go: processing on the client or the server, the link, the
server's queue and compute?

One run through the real stages per platform, network and pipeline (generate, convert,
measure, collect, analyze; an embedded PostgreSQL in a throwaway home), batch 1, Poisson
arrivals at one rate, through the emulated link of each named profile
(inferbench/network/profiles.py) or none; the model is the canonical generator's residual
CNN on 3 x 128 x 128 (`--model cnn`), ResNet-50 on 3 x 224 x 224 (`--model resnet50`) or
BERT-Base on 128 tokens (`--model bert_base`). A pipeline is `none` (requests carry the
model's tensors), `client` or `server` (JPEGs of 640 x 480 decoded and resized there, or
texts tokenised there; top-5 labels made there: inferbench/processing/).
Prints a Markdown table of the mean latency and its parts (analysis/server_split.py), the
share the measured parts explain, the p99 and the run's time; draws the stacked bars to
benchmarks/pipeline/<--figure>. The load average is printed before and after.

    .venv/bin/python benchmarks/pipeline/split.py \
        --platforms onnxruntime,triton,torchscript,mlserver --networks none,lan,wifi,4g
    .venv/bin/python benchmarks/pipeline/split.py --model resnet50 --platforms onnxruntime \
        --networks lan,wifi,4g --pipelines client,server --rate-rps 0.5 --requests 40 \
        --figure resnet50_pipeline.png
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
from analysis.server_split import PARTS, latency_split  # noqa: E402
from inferbench.backends import get_backend  # noqa: E402
from inferbench.perfdb import schema  # noqa: E402

MODELS = {
    "cnn": ("Residual CNN (depth 2, width 16) on 3x128x128 float32",
            {"family": "cnn", "depth": 2, "width": 16, "input_shape": [3, 128, 128], "seed": 0}),
    "resnet50": ("ResNet-50 on 3x224x224 float32",
                 {"architecture": "resnet50", "input_shape": [3, 224, 224], "seed": 0}),
    "bert_base": ("BERT-Base on 128 tokens (int64 ids and attention mask)",
                  {"architecture": "bert_base", "input_shape": [128], "seed": 0}),
}


def spec_for(model: str, platform: str, network: str, pipeline: str, rate_rps: float,
             requests: int) -> dict[str, Any]:
    spec = {
        "name": f"split-{model}-{platform}-{network}-{pipeline}",
        "model": MODELS[model][1],
        # ONNX (the export every platform's conversion starts from) and the platform's own
        "formats": sorted({"onnx", get_backend(platform).model_format.value}),
        "platforms": [platform], "batch_sizes": [1],
        "workload": {"arrival": "poisson", "rate_rps": rate_rps, "seed": 1},
        "warmup_s": 3.0, "min_duration_s": 20.0, "min_requests": requests,
        "max_duration_s": 600.0,
        "slo": {"percentile": 99.0, "latency_ms": 1000.0},
    }
    if network != "none":
        spec["network"] = network
    if pipeline != "none":
        spec["pipeline"] = {"preprocess": pipeline, "postprocess": pipeline, "top_k": 5}
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--platforms", default="onnxruntime,triton,torchscript,mlserver")
    parser.add_argument("--networks", default="none,lan,wifi,4g")
    parser.add_argument("--pipelines", default="none", help="none, client, server")
    parser.add_argument("--figure", default="network_split.png")
    parser.add_argument("--rate-rps", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()

    rows, bars = [], []
    started = time.monotonic()
    runs = [(p, n, pl) for p in args.platforms.split(",") for pl in args.pipelines.split(",")
            for n in args.networks.split(",")]
    with throwaway_home("ib-split-"):
        print(f"load average before: {load_average()}")
        for platform, network, pipeline in runs:
            t0 = time.monotonic()
            spec = spec_for(args.model, platform, network, pipeline, args.rate_rps,
                            args.requests)
            run_id = spec["name"]
            result = run_through_stages(run_id, spec, platform)
            with result["ctx"].db.connect() as conn:
                point = conn.execute(select(schema.points).where(
                    schema.points.c.run_id == run_id)).mappings().one()
            (summary,) = result["summary"]["results"]
            split = latency_split({**point, "latency_ms": summary["latency_ms"]})
            rows.append((platform, network, pipeline, summary, split, time.monotonic() - t0))
            if split is not None:
                bars.append((f"{platform} {network} {pipeline}", split))
    print(f"load average after: {load_average()}")
    print(f"total: {time.monotonic() - started:.0f} s\n")
    print(f"{MODELS[args.model][0]}, batch 1, Poisson {args.rate_rps:g} req/s, "
          f">= {args.requests} requests a run; ms, means per request\n")
    names = [name for name, _ in PARTS]
    print("| platform | network | processing | requests | verdict | mean | "
          + " | ".join(names) + " | rest | measured parts / mean | p99 (send to answer) | "
          "run (s) |")
    print("|---|---|---|---:|---|---:|" + "---:|" * len(names) + "---:|---:|---:|---:|")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for platform, network, pipeline, summary, split, run_s in rows:
        latency = summary["latency_ms"]
        if split is None:
            mean, parts, explained = ms(latency["mean"]), ["-"] * (len(names) + 1), "-"
        else:
            mean = ms(split.mean_ms)
            parts = [ms(v) for v in split.known_ms().values()] + [ms(split.rest_ms)]
            # Not capped at 100 %: the parts may sum past the mean by a fraction of a ms
            # (the relay's own round trip, taken off its delay lines, is an estimate).
            explained = f"{100 * split.measured_share:.1f} %"
        print(f"| {platform} | {network} | {pipeline} | {summary['n_ok']} | "
              f"{summary['verdict']} | {mean} | {' | '.join(parts)} | {explained} | "
              f"{latency['p99']:.2f} | {run_s:.0f} |")
    if bars:
        out = plots.latency_split_png(bars, Path(__file__).with_name(args.figure),
                                      title="Mean latency by part")
        print(f"\nstacked bars: {out}")


if __name__ == "__main__":
    main()
