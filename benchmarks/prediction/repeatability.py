"""How close to itself is one rung on this host: could any prediction meet the accuracy goals
against single rungs here?

The accuracy goals compare a prediction with one measured rung (mean within 5 % at rho <= 0.8,
within 10 % at 0.8-0.9, p99 within 10 %). A rung measured twice at the same rate on the same
server gives two answers; when they differ by more than the goal, no prediction, however
good, can meet the goal against both. This benchmark measures that floor. For each platform x
instance count x batch size, through the real stages on one embedded PostgreSQL:
1. a short run whose profile gives the family's capacity;
2. one run whose list ladder measures each rho of `--rhos` `--repeats` times in a row on the
   same server (a list ladder must climb, so the repeats' rates rise by 1 part in 10^4,
   which moves the queue's mean by well under 0.1 %), with the prediction on, so each rung
   also stores the model's prediction from that run's own profile. With several
   `--profile-s` lengths, one such run per length, back to back on the same rates, each
   scored on its own rungs: does a longer profile predict its server's rungs better? With
   `--server-cpus` given more than once (`none` for no pinning), likewise one run per
   setting of resources.server_cpus: does a load generator kept off the server's CPUs
   make the rungs agree with each other, and the model with them?
Per rung, errors against the measured mean and p99: the model's (recomputed from the run's
stored profile with this checkout's model, so a saved run replays with the model as it is;
with every probe, and with the loaded probe at half capacity only, side by side), and the
oracle's, the median of the other repeats of the same rate on the same server (leave one
out): the best a prediction that knew this server's typical result at that rate could do
against one rung.
Prints Markdown tables with the load average before and after.

    .venv/bin/python benchmarks/prediction/repeatability.py \
        --platforms onnxruntime,torchscript,triton --instances 1,2 --batch-sizes 1,8
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: stage_runs
sys.path.insert(0, str(Path(__file__).resolve().parent))  # platforms.py beside it
import platforms  # noqa: E402
from platforms import (  # noqa: E402
    BASE_SPEC,
    ErrorOf,
    add_family_options,
    error,
    parse_or_replay,
    predict_rungs,
    run_spec,
    rung_measures,
    rung_settings,
)
from stage_runs import load_average, throwaway_home  # noqa: E402

# Relative rise between the repeats of one rate (a list ladder must climb strictly).
REPEAT_STEP = 1e-4
# The predictions scored, by the platforms.VARIANTS entry each reads.
MODELS = {"model": "pred", "half": "half"}
# Who is scored in the goal tables: the oracle, then each model, then the model against
# each rate's median over its repeats (scored once per rate).
SCORED = ("oracle", *MODELS, "median")
# --server-cpus for a run whose server and load generator may run anywhere.
UNPINNED = "none"


def repeat_rates(capacity_rps: float, rhos: list[float], repeats: int) -> list[float]:
    """Each rho's rate `repeats` times, rising by REPEAT_STEP so the ladder climbs."""
    return [round(rho * capacity_rps * (1 + REPEAT_STEP * i), 6)
            for rho in sorted(rhos) for i in range(repeats)]


def rate_groups(rows: list[dict[str, Any]], repeats: int) -> list[list[dict[str, Any]]]:
    """The rungs of one rate together: a run measures each rate `repeats` times in a row."""
    return [rows[start:start + repeats] for start in range(0, len(rows), repeats)]


def oracle_errors(rows: list[dict[str, Any]], what: str, repeats: int) -> list[float | None]:
    """Per rung, the error of the median of the other repeats of its rate (leave one out)."""
    errs: list[float | None] = []
    for rungs in rate_groups(rows, repeats):
        group = [r[what] for r in rungs]
        for i, measured in enumerate(group):
            others = group[:i] + group[i + 1:]
            errs.append(error(float(np.median(others)), measured) if others else None)
    return errs


def family_rows(entry: dict[str, Any], rows: list[dict[str, Any]],
                repeats: int) -> list[dict[str, Any]]:
    """The rungs with their rho (against the profiled capacity), the oracle's errors and
    the model's, recomputed from the stored profile with this checkout's model: with every
    probe ("model") and with the loaded probe at half capacity only ("half"); and, on the
    first rung of each rate only, the model's error against the median of that rate's
    repeats ("median": the measured ladder with one rung's noise damped)."""
    prediction = predict_rungs(entry, rows)
    capacity = prediction.model.capacity_rps if prediction is not None else None

    def scored(pred: float | None, measured: float) -> float | None:
        # A rung the server held but the model calls unstable is a miss.
        err = error(pred, measured)
        return math.inf if err is None and capacity else err

    for what in ("mean", "p99"):
        for row, oracle in zip(rows, oracle_errors(rows, what, repeats), strict=True):
            row[f"oracle_{what}_err"] = oracle
            for who, pred in MODELS.items():
                row[f"{who}_{what}_err"] = scored(row[f"{pred}_{what}"], row[what])
        for group in rate_groups(rows, repeats):
            median = float(np.median([r[what] for r in group]))
            for i, row in enumerate(group):
                row[f"median_{what}_err"] = (scored(row[f"{MODELS['model']}_{what}"], median)
                                             if i == 0 else None)
    for row in rows:
        row["rho"] = row["rate"] / capacity if capacity else None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_family_options(parser, rhos="0.3,0.6,0.85")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--profile-s", default="2",
                        help="seconds per profile level; several (2,8): per family, one "
                             "measured run per length, back to back, each scored on its "
                             "own rungs")
    parser.add_argument("--server-cpus", action="append", default=None, metavar="CPUS",
                        help="resources.server_cpus of the measured runs (\"1\", \"2-3\"; "
                             f"{UNPINNED!r}: no pinning, the default); given more than once, "
                             "one measured run per setting, back to back")
    args = parse_or_replay(parser, "/tmp/prediction-repeatability.json", print_tables)
    if args is None:
        return
    rhos = [float(r) for r in args.rhos.split(",")]
    # The SLO only sets each rung's verdict here; the rungs all run.
    common = {**BASE_SPEC, **rung_settings(args.rung_s, slo_p99_ms=50.0)}
    lengths = [float(x) for x in str(args.profile_s).split(",")]
    cpu_settings = [None if c == UNPINNED else c for c in args.server_cpus or [UNPINNED]]
    ladder = {"mode": "list", "stop_after_failure": False, "max_family_s": 3600,
              "predict": True, "profile_s": lengths[0]}
    families = []
    started = time.monotonic()
    with throwaway_home("ib-repeat-"):
        print(f"load average before: {load_average()}", flush=True)
        for platform, instances, b in itertools.product(
                args.platforms.split(","), (int(i) for i in args.instances.split(",")),
                (int(x) for x in args.batch_sizes.split(","))):
            tag, name = f"{platform}-i{instances} b{b}", f"{platform}-i{instances}-b{b}"
            spec = {**common, "platforms": [platform], "batch_sizes": [b],
                    "server": {"instance_count": instances}}
            first = run_spec(f"rep-cap-{name}", {
                **spec, "name": f"capacity-{name}",
                "workload": {"arrival": "poisson", "rate_rps": [10.0], "seed": 1},
                "ladder": {**ladder, "max_rungs": 1}}, platform)
            (profiled,) = first["load"]["predictions"]
            capacity = (profiled["model"] or {}).get("capacity_rps")
            if not capacity:
                print(f"{tag}: no capacity profiled, skipped", flush=True)
                continue
            rates = repeat_rates(capacity, rhos, args.repeats)
            for seconds, cpus in itertools.product(lengths, cpu_settings):
                suffix = (f"-p{seconds:g}s" if len(lengths) > 1 else "") + (
                    f"-cpus{cpus or UNPINNED}" if len(cpu_settings) > 1 else "")
                measured = run_spec(f"rep-{name}{suffix}", {
                    **spec, "name": f"repeat-{name}{suffix}",
                    "workload": {"arrival": "poisson", "rate_rps": rates, "seed": 1},
                    "ladder": {**ladder, "max_rungs": len(rates), "profile_s": seconds},
                    **({"resources": {"server_cpus": cpus}} if cpus else {})}, platform)
                (own,) = measured["load"]["predictions"]
                families.append((tag, own, rung_measures(measured), seconds, cpus))
                print(f"{tag}, {variant_label(seconds, cpus)}: {len(rates)} rungs, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
    print(f"load average after: {load_average()}; {time.monotonic() - started:.0f} s in all")
    results = {"settings": vars(args), "families": families}
    Path(args.save).write_text(json.dumps(results))
    print(f"results saved to {args.save}")
    print_tables(results)


def variant_label(seconds: float, cpus: str | None) -> str:
    """How a measured run was set up: its profile length and where its server ran."""
    return f"{seconds:g} s profile levels, " + (
        f"server on CPUs {cpus}, load generator on the others" if cpus else "unpinned")


def family_variants(results: dict[str, Any]
                    ) -> list[tuple[str, dict, list, tuple[float, str | None]]]:
    """The saved families, each with its run's variant: (seconds per profile level, the
    server's CPUs or None). Runs saved before either was varied store the length in the
    settings only, and ran unpinned."""
    default = float(str(results["settings"]["profile_s"]).split(",")[0])
    return [(*family[:3], (family[3] if len(family) > 3 else default,
                           family[4] if len(family) > 4 else None))
            for family in results["families"]]


def print_tables(results: dict[str, Any]) -> None:
    args = argparse.Namespace(**results["settings"])
    families = family_variants(results)
    variants = sorted({variant for *_, variant in families},
                      key=lambda v: (v[0], v[1] or ""))
    every: dict[tuple, list[dict[str, Any]]] = {variant: [] for variant in variants}
    print(f"\nRungs of >= {args.rung_s:g} s, {args.repeats} repeats of each rate on one "
          f"server; error = predicted / measured - 1; oracle: the median of the other "
          f"repeats; unstable: the model puts the rate at or beyond capacity (a miss)\n")
    print("| family | rho | rate (req/s) | mean ms, each repeat | oracle error % | model "
          "error % | half-capacity probe only: error % | p99 ms, each repeat | oracle error % "
          "| model error % |")
    print("|---|---:|---:|---|---|---|---|---|---|---|")

    def cells(group: list[dict[str, Any]], key: str, fmt: str) -> str:
        return " / ".join("-" if r[key] is None else "unstable" if r[key] == math.inf
                          else format(r[key], fmt) for r in group)

    for tag, own, rows, variant in families:
        rows = family_rows(own, rows, args.repeats)
        every[variant] += rows
        if len(variants) > 1:
            tag = f"{tag}, {variant_label(*variant)}"
        for group in rate_groups(rows, args.repeats):
            rho = group[0]["rho"]
            print(f"| {tag} | {'-' if rho is None else f'{rho:.2f}'} | "
                  f"{group[0]['rate']:.4g} | {cells(group, 'mean', '.2f')} | "
                  f"{cells(group, 'oracle_mean_err', '+.1f')} | "
                  f"{cells(group, 'model_mean_err', '+.1f')} | "
                  f"{cells(group, 'half_mean_err', '+.1f')} | {cells(group, 'p99', '.2f')} | "
                  f"{cells(group, 'oracle_p99_err', '+.1f')} | "
                  f"{cells(group, 'model_p99_err', '+.1f')} |")
    for variant in variants:
        which = f", {variant_label(*variant)}," if len(variants) > 1 else ""
        print(f"\nThe goals, rungs meeting them{which} (rho against each run's own profiled "
              "capacity):\n")
        goal_table(every[variant])


# The goal tables' column titles, by who is scored.
TITLES = {"oracle": "oracle (median of the other repeats)", "model": "model",
          "half": "model, half-capacity probe only",
          "median": "model against the median of the repeats (per rate)"}


def goal_table(rows: list[dict[str, Any]]) -> None:
    """The goals met by each of SCORED, their median errors, and the model's median signed
    error (is it high or low?)."""
    def scored(who: str) -> ErrorOf:
        return lambda row, what: row[f"{who}_{what}_err"]

    platforms.goal_table(rows, {TITLES[who]: scored(who) for who in SCORED},
                         medians=("mean", "p99"))
    light = [r for r in rows if r["rho"] is not None and r["rho"] <= 0.8]
    signed = [r["model_mean_err"] for r in light
              if r["model_mean_err"] is not None and r["model_mean_err"] != math.inf]
    if signed:
        cells = [f" {np.median(signed):+.1f} % |" if who == "model" else " |" for who in SCORED]
        print(f"| model's median signed mean error at rho <= 0.8 |{''.join(cells)}")


if __name__ == "__main__":
    main()
