"""Does the queueing model predict the real platforms, and does it make the capacity search
cheaper without changing its answer?

For each platform x instance count, on one embedded PostgreSQL, through the real stages
(generate, convert, measure, collect, analyze), one after the other in one process:
1. guided: a capacity search with the prediction on (profile, then rungs placed at the
   predicted SLO crossing);
2. blind: the same search with the prediction off (geometric climb from `--start-rps`,
   then bisection) - the ladder a user ran before;
3. accuracy, per batch size: a list ladder at rho = `--rhos` of the capacity the guided
   run's profile measured, every rung run; each rung stores the prediction of that run's
   own profile, compared with the rung's measured mean and p99 (from the scheduled send).
Load time counts every second the family spent on the server: rungs, and for the guided
search its profile too. Prints Markdown tables with the load average before and after.

    .venv/bin/python benchmarks/prediction/platforms.py \
        --platforms onnxruntime,torchscript,triton --instances 1,2 --batch-sizes 1,8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: stage_runs
from stage_runs import load_average, run_through_stages, throwaway_home  # noqa: E402

BASE_SPEC: dict[str, Any] = {
    # A service of a few ms at batch 1 (tens at batch 8), as DL models have; see --model.
    "model": {"family": "cnn", "depth": 4, "width": 32, "input_shape": [3, 32, 32],
              "num_outputs": 10, "seed": 0},
    "formats": ["onnx", "torchscript"],
    "warmup_s": 2.0,
    # This benchmark is about the model and the search; a shared 2-core host delays some
    # sends, and the rung verdicts keep that visible without stopping the ladders.
    "max_late_send_pct": 20.0,
}


def rate(rps: float | None) -> str:
    """A capacity as the table shows it: four significant digits, '-' when none held."""
    return f"{rps:.4g}" if rps else "-"


def run_spec(run_id: str, spec: dict[str, Any], platform: str) -> dict[str, Any]:
    """One run through the stages; its load.json and summary."""
    from inferbench.server_grid import resolve_config

    run = run_through_stages(run_id, spec, platform)
    ctx = run["ctx"]
    files = resolve_config(ctx.spec, ctx.run_dir, platform, 0).files
    load = json.loads(files.load.read_text())
    return {"summary": run["summary"], "load": load, "files": files}


def family_cost(run: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """A family's capacity (the analysis's), rungs and load time (profile included)."""
    load = run["load"]
    (ladder,) = [lad for lad in load["ladders"] if lad["batch_size"] == batch_size]
    profile_s = sum(p["profile_s"] for p in load.get("predictions", [])
                    if p["batch_size"] == batch_size)
    (family,) = [f for f in run["summary"]["families"] if f["batch_size"] == batch_size]
    return {"capacity": family["capacity_rps"], "rungs": ladder["rungs"],
            "load_s": ladder["elapsed_s"] + profile_s, "profile_s": profile_s}


def rung_errors(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per rung: measured mean and p99 (ok requests, from the scheduled send) against the
    prediction stored with it."""
    rows = []
    for p in run["load"]["points"]:
        a = np.load(run["files"].point_records(p["point"]))
        ok = (a["status"] == 200) & (a["done_ns"] >= 0)
        lat = (a["done_ns"][ok] - a["scheduled_ns"][ok]) / 1e6
        sent = ok.size / max((p["ended_ns"] - p["started_ns"]) / 1e9, 1e-9)
        rows.append({"rate": p["target_rate_rps"], "sent": sent,
                     "mean": float(lat.mean()), "p99": float(np.percentile(lat, 99)),
                     "pred_mean": p.get("predicted_mean_ms"),
                     "pred_p99": p.get("predicted_p99_ms"),
                     "late_pct": float(100 * np.mean((a["sent_ns"] - a["scheduled_ns"])
                                                     > 1e6)),
                     "holds": p.get("rung_holds")})
    return rows


def pct(pred: float | None, measured: float) -> str:
    return "-" if pred is None else f"{100 * (pred / measured - 1):+.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platforms", default="onnxruntime,torchscript,triton")
    parser.add_argument("--instances", default="1,2")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--rhos", default="0.3,0.5,0.7,0.8,0.9")
    parser.add_argument("--start-rps", type=float, default=50.0)
    parser.add_argument("--precision-pct", type=float, default=10.0)
    parser.add_argument("--rung-s", type=float, default=5.0, help="min_duration_s of a rung")
    parser.add_argument("--profile-s", type=float, default=2.0)
    parser.add_argument("--slo-p99-ms", type=float, default=50.0)
    parser.add_argument("--model", default=None, help="the spec's model section as JSON "
                        "(default: a 4-block CNN of width 32 on 3x32x32)")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rhos = [float(r) for r in args.rhos.split(",")]

    model = json.loads(args.model) if args.model else BASE_SPEC["model"]
    common = {**BASE_SPEC, "model": model, "min_duration_s": args.rung_s, "min_requests": 50,
              "max_duration_s": 4 * args.rung_s,
              "slo": {"percentile": 99.0, "latency_ms": args.slo_p99_ms}}
    searches, accuracy = [], []
    started = time.monotonic()
    with throwaway_home("ib-prediction-"):
        print(f"load average before: {load_average()}", flush=True)
        for platform in args.platforms.split(","):
            for instances in (int(i) for i in args.instances.split(",")):
                tag = f"{platform}-i{instances}"
                spec = {**common, "platforms": [platform], "batch_sizes": batch_sizes,
                        "server": {"instance_count": instances},
                        "workload": {"arrival": "poisson", "rate_rps": args.start_rps,
                                     "seed": 1}}
                ladder = {"mode": "search", "precision_pct": args.precision_pct,
                          "max_rungs": 30, "max_family_s": 3600, "profile_s": args.profile_s}
                guided = run_spec(f"pred-guided-{tag}", {
                    **spec, "name": f"guided-{tag}", "ladder": {**ladder, "predict": True}},
                    platform)
                blind = run_spec(f"pred-blind-{tag}", {
                    **spec, "name": f"blind-{tag}", "ladder": {**ladder, "predict": False}},
                    platform)
                for b in batch_sizes:
                    searches.append((tag, b, family_cost(guided, b), family_cost(blind, b),
                                     next(p for p in guided["load"]["predictions"]
                                          if p["batch_size"] == b)))
                    predicted = searches[-1][4]
                    model = predicted["model"] or {}
                    if not model.get("capacity_rps") or model.get("unmodelled"):
                        continue
                    rates = [float(f"{r * model['capacity_rps']:.4g}") for r in rhos]
                    measured = run_spec(f"pred-acc-{tag}-b{b}", {
                        **spec, "name": f"accuracy-{tag}-b{b}", "batch_sizes": [b],
                        "workload": {"arrival": "poisson", "rate_rps": rates, "seed": 1},
                        "ladder": {"mode": "list", "stop_after_failure": False,
                                   "max_rungs": len(rates), "max_family_s": 3600,
                                   "predict": True, "profile_s": args.profile_s}}, platform)
                    (own,) = measured["load"]["predictions"]
                    accuracy.append((tag, b, own, rung_errors(measured)))
    print(f"load average after: {load_average()}; {time.monotonic() - started:.0f} s in all")
    print(f"\nSearch: SLO p99 <= {args.slo_p99_ms:g} ms, precision {args.precision_pct:g} %, "
          f"rungs of >= {args.rung_s:g} s, profile {args.profile_s:g} s per level; blind "
          f"search from {args.start_rps:g} req/s\n")
    print("| family | predicted capacity within SLO | guided: capacity | rungs | load s "
          "(profile s) | blind: capacity | rungs | load s | capacity diff | guided / blind "
          "time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tag, b, g, bl, predicted in searches:
        diff = (f"{100 * (g['capacity'] / bl['capacity'] - 1):+.1f} %"
                if g["capacity"] and bl["capacity"] else "-")
        pred = predicted["slo_capacity_rps"]
        print(f"| {tag} b{b} | {'-' if pred is None else f'{pred:.1f}'} | "
              f"{rate(g['capacity'])} | {g['rungs']} | {g['load_s']:.0f} "
              f"({g['profile_s']:.0f}) | {rate(bl['capacity'])} | {bl['rungs']} | "
              f"{bl['load_s']:.0f} | {diff} | {g['load_s'] / bl['load_s']:.2f} |")
    print("\nAccuracy: each rung's own run's prediction against what the rung measured "
          "(error = predicted / measured - 1)\n")
    print("| family | model | rho | rate (req/s) | late sends % | mean ms: measured / "
          "predicted | error % | p99 ms: measured / predicted | error % |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for tag, b, own, rows in accuracy:
        model = own["model"] or {}
        name = model.get("name") or f"unmodelled: {model.get('unmodelled')}"
        for row in rows:
            rho = row["rate"] / model["capacity_rps"] if model.get("capacity_rps") else 0
            pm = "-" if row["pred_mean"] is None else f"{row['pred_mean']:.2f}"
            pp = "-" if row["pred_p99"] is None else f"{row['pred_p99']:.2f}"
            print(f"| {tag} b{b} | {name} | {rho:.2f} | {row['rate']:g} | "
                  f"{row['late_pct']:.1f} | {row['mean']:.2f} / {pm} | "
                  f"{pct(row['pred_mean'], row['mean'])} | {row['p99']:.2f} / {pp} | "
                  f"{pct(row['pred_p99'], row['p99'])} |")


if __name__ == "__main__":
    main()
