"""Does the capacity search find what a brute-force fine ladder finds, and how much sooner?

For each platform, one run searches (geometric climb from `--start-rps`, then bisection to
`--precision-pct`); a second run then measures a fine ladder of `--fine-rungs` rates spaced
geometrically from 0.6x to 1.5x the search's answer, every rung run (no early stop). Both
use the same model, server, batch size, rung length and SLO, one after the other in one
process, and go through the real stages (generate, convert, measure, collect, analyze) on an
embedded PostgreSQL. Prints a Markdown table with the load average before and after.

    .venv/bin/python benchmarks/capacity/search_vs_fine_ladder.py --platforms onnxruntime,triton

The fine ladder is placed with the search's answer, so it checks that answer; it is not a
competing search (a blind fine sweep over the same range would need many more rungs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: stage_runs
from stage_runs import load_average, run_through_stages, throwaway_home  # noqa: E402

BASE_SPEC: dict[str, Any] = {
    "model": {"family": "cnn", "depth": 2, "width": 16, "input_shape": [3, 32, 32],
              "num_outputs": 10, "seed": 0},
    "formats": ["onnx"],
    "batch_sizes": [1],
    "warmup_s": 2.0,
    # A shared 2-core host stalls now and then; the rung's validity is judged apart from the
    # SLO, and this benchmark is about the search, not the generator's late sends.
    "max_late_send_pct": 20.0,
}


def run_family(run_id: str, spec: dict[str, Any], platform: str) -> dict[str, Any]:
    """One run through the stages; the family's capacity row and the measure stage's
    ladder facts."""
    run = run_through_stages(run_id, spec, platform)
    (family,) = [f for f in run["summary"]["families"] if f["platform"] == platform]
    (ladder,) = run["measured"]["ladders"]
    return {"family": family, "ladder": ladder, "measure_s": run["measure_s"]}


def fine_rates(centre: float, n: int) -> list[float]:
    low, high = 0.6 * centre, 1.5 * centre
    step = (high / low) ** (1 / (n - 1))
    return [float(f"{low * step ** i:.4g}") for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platforms", default="onnxruntime,triton")
    parser.add_argument("--start-rps", type=float, default=50.0)
    parser.add_argument("--precision-pct", type=float, default=5.0)
    parser.add_argument("--fine-rungs", type=int, default=20)
    parser.add_argument("--rung-s", type=float, default=5.0, help="min_duration_s of a rung")
    parser.add_argument("--slo-p99-ms", type=float, default=20.0)
    args = parser.parse_args()

    common = {**BASE_SPEC, "min_duration_s": args.rung_s, "min_requests": 50,
              "max_duration_s": 4 * args.rung_s,
              "slo": {"percentile": 99.0, "latency_ms": args.slo_p99_ms}}
    rows = []
    with throwaway_home("ib-capacity-"):
        print(f"load average before: {load_average()}")
        for platform in args.platforms.split(","):
            search_spec = {**common, "name": f"capacity-search-{platform}",
                           "platforms": [platform],
                           "workload": {"arrival": "poisson", "rate_rps": args.start_rps,
                                        "seed": 1},
                           "ladder": {"mode": "search", "precision_pct": args.precision_pct,
                                      "max_rungs": 30, "max_family_s": 3600}}
            search = run_family(f"cap-search-{platform}", search_spec, platform)
            centre = search["family"]["capacity_rps"] or args.start_rps
            rates = fine_rates(centre, args.fine_rungs)
            fine_spec = {**search_spec, "name": f"capacity-fine-{platform}",
                         "workload": {"arrival": "poisson", "rate_rps": rates, "seed": 1},
                         "ladder": {"mode": "list", "stop_after_failure": False,
                                    "max_rungs": args.fine_rungs, "max_family_s": 3600}}
            fine = run_family(f"cap-fine-{platform}", fine_spec, platform)
            rows.append((platform, search, fine, rates))
    print(f"load average after: {load_average()}")
    print(f"\nSLO p99 <= {args.slo_p99_ms:g} ms, batch 1, rungs of >= {args.rung_s:g} s, search "
          f"precision {args.precision_pct:g} %, fine ladder {args.fine_rungs} rungs over "
          "0.6-1.5x the search's answer\n")
    print("| platform | search: capacity (req/s) | search: bracket | search: rungs | search: "
          "load time (s) | fine: capacity (req/s) | fine: first failing rung | fine: rungs | "
          "fine: load time (s) | search vs fine |")
    print("|---|---:|---|---:|---:|---:|---|---:|---:|---:|")
    for platform, search, fine, _rates in rows:
        s, f = search["family"], fine["family"]

        def bracket(family: dict[str, Any]) -> str:
            b = family.get("capacity_bracket") or {}
            return f"{b.get('offered', '-')} ({b.get('reason', 'none failed')})"

        diff = (f"{100 * (s['capacity_rps'] / f['capacity_rps'] - 1):+.1f} %"
                if s["capacity_rps"] and f["capacity_rps"] else "-")
        print(f"| {platform} | {s['capacity_rps'] or '-'} | {bracket(s)} | {s['n_rungs']} | "
              f"{search['ladder']['elapsed_s']:.0f} | {f['capacity_rps'] or '-'} | "
              f"{bracket(f)} | {f['n_rungs']} | {fine['ladder']['elapsed_s']:.0f} | {diff} |")
    for platform, _search, _fine, rates in rows:
        print(f"fine rates ({platform}): {rates}")


if __name__ == "__main__":
    main()
