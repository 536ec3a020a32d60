"""Above the highest loaded probe's rate, what should the open-loop factor f be: held from
that probe (the model), or brought back to 1 at the closed-loop capacity, where an open-loop
server is as busy as the saturated closed loop (the anchored alternative)?

Reads saved runs of repeatability.py (no new measurement: the rungs and each run's one
stored profile) and, for every rung above its family's highest loaded probe, prints the
measured mean and both predictions' errors, with a summary. The anchored model is the same
prediction with one more knot, f = 1 at the closed-loop capacity (linear in the rate from
the last probe to it, as between probes), so its open-loop capacity moves with it.

    .venv/bin/python benchmarks/prediction/beyond_probes.py \
        benchmarks/prediction/results/near20s-a.json benchmarks/prediction/results/near20s-b.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: analysis/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # platforms.py beside it
from platforms import error, from_levels  # noqa: E402

from analysis.prediction import Prediction  # noqa: E402

LIMIT_PCT = 10.0  # the accuracy goal's bound near capacity


def anchored(prediction: Prediction) -> Prediction:
    """The prediction with f brought to 1 at the closed-loop capacity."""
    model = prediction.model
    knots = (*model.open_loop_factors, (model.closed_capacity_rps, 1.0))
    return Prediction(prediction.levels, replace(model, open_loop_factors=knots))


def rows_beyond(entry: dict[str, Any], rungs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rungs above the family's highest loaded probe, with both models' mean errors."""
    held = from_levels(entry, -2)
    if held is None or not held.model.open_loop_factors:
        return []
    last = held.model.open_loop_factors[-1][0]
    if held.model.closed_capacity_rps <= last:
        return []  # nothing to anchor: the probe already reached the closed-loop capacity
    other = anchored(held)
    return [{"rate": r["rate"], "rho": r["rate"] / held.model.capacity_rps,
             "last_probe": last, "mean": r["mean"],
             "held": error(held.at(r["rate"]).mean_ms, r["mean"]),
             "anchored": error(other.at(r["rate"]).mean_ms, r["mean"])}
            for r in rungs if r["rate"] > last]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved", nargs="+", help="repeatability.py --save files")
    args = parser.parse_args()
    every: list[dict[str, Any]] = []
    print("| family | run | rho (model) | rate (req/s) | highest probe (req/s) | measured mean "
          "ms | f held: error % | f to 1 at closed capacity: error % |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for path in args.saved:
        for tag, entry, rungs, *_ in json.loads(Path(path).read_text())["families"]:
            for row in rows_beyond(entry, rungs):
                every.append(row)
                cells = [f"{row[k]:+.1f}" if row[k] is not None else "unstable"
                         for k in ("held", "anchored")]
                print(f"| {tag} | {Path(path).stem} | {row['rho']:.2f} | {row['rate']:.4g} | "
                      f"{row['last_probe']:.4g} | {row['mean']:.2f} | {' | '.join(cells)} |")
    print(f"\n{len(every)} rungs above their family's highest loaded probe:\n")
    print("| | f held | f to 1 at closed capacity |\n|---|---:|---:|")
    summary = {}
    for who in ("held", "anchored"):
        errs = [r[who] for r in every]
        known = [e for e in errs if e is not None]
        goal = [r[who] for r in every if r["rho"] <= 0.9]
        summary[who] = [f"{sum(abs(e) <= LIMIT_PCT for e in known)} of {len(errs)}",
                        f"{sum(e is not None and abs(e) <= LIMIT_PCT for e in goal)} of "
                        f"{len(goal)}",
                        f"{np.median(np.abs(known)):.1f} %" if known else "-",
                        f"{sum(e > 0 for e in known)} / {sum(e < 0 for e in known)}",
                        str(len(errs) - len(known))]
    for i, label in enumerate((f"mean within {LIMIT_PCT:g} %",
                               f"mean within {LIMIT_PCT:g} % at rho <= 0.9 (the goal's range)",
                               "median |error|",
                               "too high / too low", "called unstable")):
        print(f"| {label} | {summary['held'][i]} | {summary['anchored'][i]} |")


if __name__ == "__main__":
    main()
