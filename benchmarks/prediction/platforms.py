"""Does the queueing model predict the real platforms, and does it make the capacity search
cheaper without changing its answer?

For each platform x instance count, on one embedded PostgreSQL, through the real stages
(generate, convert, measure, collect, analyze), one after the other in one process:
1. guided: a capacity search with the prediction on (profile, then rungs placed at the
   predicted SLO crossing);
2. blind: the same search with the prediction off (geometric climb from `--start-rps`,
   then bisection) - the ladder a user ran before;
   with `--brute`, also a brute-force ladder: from `--start-rps` up by `--precision-pct`
   per rung, every rung run until the first that fails (the capacity to the same
   precision, found without a search);
3. accuracy, per batch size: a list ladder at rho = `--rhos` of the capacity the guided
   run's profile measured, every rung run; each rung stores the prediction of that run's
   own profile, compared with the rung's measured mean and p99 (from the scheduled send).
   Side by side, from the same profile: the prediction of its closed-loop levels alone,
   with the idle-arrival law added, and with the loaded probe too (as stored; see
   analysis/prediction.py).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: stage_runs
from stage_runs import load_average, run_through_stages, throwaway_home  # noqa: E402

from analysis.prediction import Level, Prediction, predict  # noqa: E402

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


def rung_settings(rung_s: float, slo_p99_ms: float) -> dict[str, Any]:
    """The spec fields every rung of these benchmarks shares: at least `rung_s` measured
    (and 50 requests), at most four times that, and the SLO on the p99."""
    return {"min_duration_s": rung_s, "min_requests": 50, "max_duration_s": 4 * rung_s,
            "slo": {"percentile": 99.0, "latency_ms": slo_p99_ms}}


def add_family_options(parser: argparse.ArgumentParser, rhos: str) -> None:
    """The options that name the families measured (platform x instance count x batch size),
    the loads as shares of each one's capacity, and a rung's length."""
    parser.add_argument("--platforms", default="onnxruntime,torchscript,triton")
    parser.add_argument("--instances", default="1,2")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--rhos", default=rhos, help="of each family's profiled capacity")
    parser.add_argument("--rung-s", type=float, default=5.0, help="min_duration_s of a rung")


def parse_or_replay(parser: argparse.ArgumentParser, save: str,
                    print_tables: Callable[[dict[str, Any]], None]) -> argparse.Namespace | None:
    """Adds --save (where results go before the tables) and --replay (print the tables of a
    saved run instead of measuring); the parsed arguments, or None once replayed."""
    parser.add_argument("--save", default=save,
                        help="where the measured results are written before the tables")
    parser.add_argument("--replay", default=None, metavar="JSON",
                        help="print the tables of a saved run instead of measuring")
    args = parser.parse_args()
    if args.replay:
        print_tables(json.loads(Path(args.replay).read_text()))
        return None
    return args


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


# Highest rate a brute-force ladder lists; it stops at its first failing rung long before.
BRUTE_TOP_RPS = 3000.0


def brute_rates(start_rps: float, precision_pct: float) -> list[float]:
    """A brute-force ladder's rates: from `start_rps` up by `precision_pct` per rung, so
    the last rung held and the first that failed are the search's precision apart."""
    step = 1 + precision_pct / 100
    count = int(np.log(BRUTE_TOP_RPS / start_rps) / np.log(step)) + 1
    return [float(f"{start_rps * step ** k:.5g}") for k in range(count)]


def family_cost(run: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """A family's capacity (the analysis's), rungs and load time (profile included)."""
    load = run["load"]
    (ladder,) = [lad for lad in load["ladders"] if lad["batch_size"] == batch_size]
    profile_s = sum(p["profile_s"] for p in load.get("predictions", [])
                    if p["batch_size"] == batch_size)
    (family,) = [f for f in run["summary"]["families"] if f["batch_size"] == batch_size]
    return {"capacity": family["capacity_rps"], "rungs": ladder["rungs"],
            "load_s": ladder["elapsed_s"] + profile_s, "profile_s": profile_s}


# The predictions compared, each from the same profile: the levels from this in-flight
# number up (1: the closed loop alone; 0: with the idle-arrival law; -1: with the loaded
# probe at half capacity; -2: with the near-capacity probe too, as stored).
# Each with its lowest level and its column title.
VARIANTS = {"closed": (1, "closed-loop levels only"), "idle": (0, "+ idle-arrival law"),
            "half": (-1, "+ loaded probe at half capacity"),
            "pred": (-2, "+ near-capacity probe (all)")}


def from_levels(entry: dict[str, Any], lowest: int) -> Prediction | None:
    """The family's prediction from its levels from `lowest` in flight up."""
    model = entry.get("model") or {}
    if not model or model.get("unmodelled"):
        return None
    levels = [Level.from_dict(lv) for lv in entry["levels"] if lv["in_flight"] >= lowest]
    return predict(levels, int(entry["parallelism"]),
                   approximation=model.get("approximation") or "exact")


def rung_measures(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per rung: measured mean and p99 (ok requests, from the scheduled send), and the
    prediction the load stage stored with it."""
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


def predict_rungs(entry: dict[str, Any], rows: list[dict[str, Any]]) -> Prediction | None:
    """Each VARIANTS prediction at each rung's rate, recomputed from the run's stored
    profile with this checkout's model (so a saved run is read with the model as it is
    now); the whole prediction, or None when the family was not modelled."""
    variants = {name: from_levels(entry, lowest) for name, (lowest, _) in VARIANTS.items()}
    for row in rows:
        for name, prediction in variants.items():
            at = None if prediction is None else prediction.at(row["rate"])
            row.update({f"{name}_mean": None if at is None else at.mean_ms,
                        f"{name}_p99": None if at is None else at.p99_ms})
    return variants["pred"]


def error(pred: float | None, measured: float) -> float | None:
    return None if pred is None else 100 * (pred / measured - 1)


GOALS = (("mean within 5 % at rho <= 0.8", "mean", lambda rho: rho <= 0.8, 5.0),
         ("mean within 10 % at 0.8 < rho <= 0.9", "mean", lambda rho: 0.8 < rho <= 0.9, 10.0),
         ("p99 within 10 % at rho <= 0.9", "p99", lambda rho: rho <= 0.9, 10.0))


# How a goal-table column reads a rung's error (percent, None: not scored) for "mean" or "p99".
ErrorOf = Callable[[dict[str, Any], str], float | None]


def goal_table(rows: list[dict[str, Any]], columns: dict[str, ErrorOf],
               medians: tuple[str, ...] = ("mean",)) -> None:
    """How many rungs meet each goal, one column per scored prediction, then each column's
    median absolute error at rho <= 0.8 for each of `medians`."""
    print(f"| goal | {' | '.join(columns)} |")
    print("|---|" + "---:|" * len(columns))
    for label, what, within, limit in GOALS:
        cells = []
        for error_of in columns.values():
            errs = [error_of(r, what) for r in rows if r["rho"] is not None and within(r["rho"])]
            errs = [e for e in errs if e is not None]
            cells.append(f"{sum(abs(e) <= limit for e in errs)} of {len(errs)}")
        print(f"| {label} | {' | '.join(cells)} |")
    light = [r for r in rows if r["rho"] is not None and r["rho"] <= 0.8]
    for what in medians:
        cells = []
        for error_of in columns.values():
            errs = [abs(e) for e in (error_of(r, what) for r in light) if e is not None]
            cells.append(f"{np.median(errs):.1f} %" if errs else "-")
        print(f"| median {what} error at rho <= 0.8 | {' | '.join(cells)} |")


def variant_error(name: str) -> ErrorOf:
    """A VARIANTS prediction's error against the rung's measurement."""
    return lambda row, what: error(row[f"{name}_{what}"], row[what])


def pct(pred: float | None, measured: float) -> str:
    return "-" if pred is None else f"{100 * (pred / measured - 1):+.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_family_options(parser, rhos="0.3,0.5,0.7,0.8,0.9")
    parser.add_argument("--start-rps", type=float, default=50.0)
    parser.add_argument("--precision-pct", type=float, default=10.0)
    parser.add_argument("--profile-s", type=float, default=2.0)
    parser.add_argument("--slo-p99-ms", type=float, default=50.0)
    parser.add_argument("--model", default=None, help="the spec's model section as JSON "
                        "(default: a 4-block CNN of width 32 on 3x32x32)")
    parser.add_argument("--no-accuracy", action="store_true",
                        help="run the searches only (no accuracy ladders)")
    parser.add_argument("--server-cpus", default=None, metavar="CPUS",
                        help="resources.server_cpus of every run (default: unpinned)")
    parser.add_argument("--brute", action="store_true",
                        help="also run a brute-force ladder per family (from --start-rps up "
                        "by --precision-pct per rung until a rung fails)")
    args = parse_or_replay(parser, "/tmp/prediction-platforms.json", print_tables)
    if args is None:
        return
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rhos = [float(r) for r in args.rhos.split(",")]

    model = json.loads(args.model) if args.model else BASE_SPEC["model"]
    common = {**BASE_SPEC, "model": model, **rung_settings(args.rung_s, args.slo_p99_ms)}
    if args.server_cpus:
        common["resources"] = {"server_cpus": args.server_cpus}
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
                brute = None
                if args.brute:
                    rates = brute_rates(args.start_rps, args.precision_pct)
                    brute = run_spec(f"pred-brute-{tag}", {
                        **spec, "name": f"brute-{tag}",
                        "workload": {**spec["workload"], "rate_rps": rates},
                        "ladder": {"mode": "list", "stop_after_failure": True,
                                   "max_rungs": len(rates), "max_family_s": 3600,
                                   "predict": False}}, platform)
                for b in batch_sizes:
                    searches.append((tag, b, family_cost(guided, b), family_cost(blind, b),
                                     next(p for p in guided["load"]["predictions"]
                                          if p["batch_size"] == b),
                                     brute and family_cost(brute, b)))
                    predicted = searches[-1][4]
                    model = predicted["model"] or {}
                    if (args.no_accuracy or not model.get("capacity_rps")
                            or model.get("unmodelled")):
                        continue
                    rates = [float(f"{r * model['capacity_rps']:.4g}") for r in rhos]
                    measured = run_spec(f"pred-acc-{tag}-b{b}", {
                        **spec, "name": f"accuracy-{tag}-b{b}", "batch_sizes": [b],
                        "workload": {"arrival": "poisson", "rate_rps": rates, "seed": 1},
                        "ladder": {"mode": "list", "stop_after_failure": False,
                                   "max_rungs": len(rates), "max_family_s": 3600,
                                   "predict": True, "profile_s": args.profile_s}}, platform)
                    (own,) = measured["load"]["predictions"]
                    accuracy.append((tag, b, own, rung_measures(measured)))
    print(f"load average after: {load_average()}; {time.monotonic() - started:.0f} s in all")
    results = {"settings": vars(args), "searches": searches, "accuracy": accuracy}
    Path(args.save).write_text(json.dumps(results))
    print(f"results saved to {args.save}")
    print_tables(results)


def capacity_diff(guided: dict[str, Any], other: dict[str, Any]) -> str:
    """The guided search's capacity against another ladder's, in percent."""
    if not (guided["capacity"] and other["capacity"]):
        return "-"
    return f"{100 * (guided['capacity'] / other['capacity'] - 1):+.1f} %"


def print_tables(results: dict[str, Any]) -> None:
    args = argparse.Namespace(**results["settings"])
    searches, accuracy = results["searches"], results["accuracy"]
    print(f"\nSearch: SLO p99 <= {args.slo_p99_ms:g} ms, precision {args.precision_pct:g} %, "
          f"rungs of >= {args.rung_s:g} s, profile {args.profile_s:g} s per level; blind "
          f"search from {args.start_rps:g} req/s"
          + (f"; server on CPUs {cpus}, load generator on the others"
             if (cpus := getattr(args, "server_cpus", None)) else "") + "\n")
    # Saves from before the brute-force ladder hold five entries per family.
    with_brute = any(len(entry) > 5 and entry[5] for entry in searches)
    print("| family | predicted capacity within SLO | guided: capacity | rungs | load s "
          "(profile s) | blind: capacity | rungs | load s | capacity diff | guided / blind "
          "time |" + (" brute force: capacity | rungs | load s | capacity diff | guided / "
                      "brute time |" if with_brute else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
          + "---:|" * (5 if with_brute else 0))
    for tag, b, g, bl, predicted, *rest in searches:
        brute = rest[0] if rest else None
        pred = predicted["slo_capacity_rps"]
        line = (f"| {tag} b{b} | {'-' if pred is None else f'{pred:.1f}'} | "
                f"{rate(g['capacity'])} | {g['rungs']} | {g['load_s']:.0f} "
                f"({g['profile_s']:.0f}) | {rate(bl['capacity'])} | {bl['rungs']} | "
                f"{bl['load_s']:.0f} | {capacity_diff(g, bl)} | "
                f"{g['load_s'] / bl['load_s']:.2f} |")
        if brute:
            line += (f" {rate(brute['capacity'])} | {brute['rungs']} | "
                     f"{brute['load_s']:.0f} | {capacity_diff(g, brute)} | "
                     f"{g['load_s'] / brute['load_s']:.2f} |")
        elif with_brute:
            line += " - | - | - | - | - |"
        print(line)
    if not accuracy:
        return
    print("\nAccuracy: each rung's own run's prediction against what the rung measured "
          "(error = predicted / measured - 1)\n")
    print("predicted (recomputed from each run's stored profile): with both open-loop probes "
          "/ with the idle-arrival law only / from the closed-loop levels alone\n")
    print("| family | model | rho | rate (req/s) | late sends % | mean ms: measured / "
          "both / idle only / closed only | error % | p99 ms: measured / both / idle "
          "only / closed only | error % |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    every = []
    for tag, b, own, rows in accuracy:
        whole = predict_rungs(own, rows)
        model = whole.model if whole is not None else None
        name = (model.name if model is not None
                else f"unmodelled: {(own.get('model') or {}).get('unmodelled')}")
        for row in rows:
            row["rho"] = row["rate"] / model.capacity_rps if model is not None else 0.0
            every.append(row)
            cells = []
            for what in ("mean", "p99"):
                preds = [row[f"{v}_{what}"] for v in ("pred", "idle", "closed")]
                cells.append(f"{row[what]:.2f} / {' / '.join(ms(x) for x in preds)} | "
                             + " / ".join(pct(x, row[what]) for x in preds))
            print(f"| {tag} b{b} | {name} | {row['rho']:.2f} | {row['rate']:g} | "
                  f"{row['late_pct']:.1f} | {cells[0]} | {cells[1]} |")
    print("\nThe goals, rungs meeting them (rho against each run's profiled capacity):\n")
    goal_table(every, {title: variant_error(name) for name, (_, title) in VARIANTS.items()})


if __name__ == "__main__":
    main()
