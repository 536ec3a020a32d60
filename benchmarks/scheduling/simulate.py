"""Mean and p95 JCT of each scheduling policy at scale, with the simulator of the same
policies (inferbench/scheduling/simulator.py: the same placement, keys and weights as the
Airflow cluster policy), for what the real scheduler on a 2-core machine cannot show:
thousands of jobs on 100 workers, arriving over time.

    .venv/bin/python benchmarks/scheduling/simulate.py --jobs 3000 --workers 100 \
        --loads 0.5,0.7,0.9 --seeds 1,2,3

Jobs are the same seeded mix as the real benchmark (inferbench/scheduling/jobmix.py: real
specs, predicted lengths from the predictor, true lengths with a lognormal prediction
error), arriving as a Poisson process whose rate gives the asked load (offered work /
capacity); or, with --burst, all submitted at once (0.08 s apart, as the real benchmark's
triggers are). Scheduler gap and eligibility delay are those measured on the real scheduler
(1 s each). Prints a Markdown table; ratios are rr_fcfs / policy (higher is better). The
row "exact lengths" is ws_sjf told every job's true length, without aging: after a burst on
identical workers that is shortest-processing-time list scheduling, the schedule of least
mean JCT, so its ratio is the most any policy can gain over rr_fcfs on that mix.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from inferbench.scheduling.jobmix import job_mix  # noqa: E402
from inferbench.scheduling.observe import jct_stats  # noqa: E402
from inferbench.scheduling.policies import KEY_EPOCH, Policy  # noqa: E402
from inferbench.scheduling.simulator import SimJob, simulate  # noqa: E402


def arriving_mix(n: int, workers: int, load: float, seed: int,
                 time_scale: float) -> list[SimJob]:
    mix = job_mix(n, seed=seed, time_scale=time_scale)
    mean_len = statistics.fmean(j.sleep_s for j in mix)
    rate = load * workers / mean_len  # jobs per second that offer `load` of the capacity
    rng = random.Random(seed * 1_000_003 + round(load * 1000))
    t, jobs = KEY_EPOCH + 1000.0, []
    for j in mix:
        t += rng.expovariate(rate)
        jobs.append(SimJob(j.label, t, j.predicted_s, j.sleep_s))
    return jobs


def burst_mix(n: int, seed: int, time_scale: float) -> list[SimJob]:
    return [SimJob(j.label, KEY_EPOCH + 1000.0 + 0.08 * i, j.predicted_s, j.sleep_s)
            for i, j in enumerate(job_mix(n, seed=seed, time_scale=time_scale))]


EXACT = "exact lengths"


def compared(jobs: list[SimJob], workers: int, aging_rate: float) -> dict[str, dict]:
    """JCT statistics of every policy, and of ws_sjf told the true lengths."""
    stats = {p.value: jct_stats([r.jct_s for r in simulate(jobs, workers, p, aging_rate)])
             for p in Policy}
    exact = [dataclasses.replace(j, predicted_s=j.actual_s) for j in jobs]
    stats[EXACT] = jct_stats([r.jct_s for r in simulate(exact, workers, Policy.WS_SJF, 0.0)])
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--loads", default="0.5,0.7,0.9")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="multiplies predicted lengths (1: the specs' own minutes)")
    ap.add_argument("--aging-rate", type=float, default=0.1)
    ap.add_argument("--burst", action="store_true",
                    help="submit every job at once instead of at --loads")
    args = ap.parse_args()

    arrivals = "all at once" if args.burst else "Poisson arrivals"
    print(f"{args.jobs} jobs, {args.workers} workers, {arrivals}, seeds {args.seeds}, "
          f"aging rate {args.aging_rate}")
    print("\n| load | seed | policy | mean JCT (s) | p95 JCT (s) | mean: rr_fcfs / policy "
          "| p95: rr_fcfs / policy |\n|---:|---:|---|---:|---:|---:|---:|")
    t0 = time.perf_counter()
    loads = [None] if args.burst else [float(x) for x in args.loads.split(",")]
    for load in loads:
        for seed in (int(x) for x in args.seeds.split(",")):
            jobs = (burst_mix(args.jobs, seed, args.time_scale) if load is None else
                    arriving_mix(args.jobs, args.workers, load, seed, args.time_scale))
            stats = compared(jobs, args.workers, args.aging_rate)
            base = stats[Policy.RR_FCFS.value]
            shown = "burst" if load is None else f"{load:.1f}"
            for p, s in stats.items():
                print(f"| {shown} | {seed} | {p} | {s['mean_s']:.1f} | "
                      f"{s['p95_s']:.1f} | {base['mean_s'] / s['mean_s']:.2f}x | "
                      f"{base['p95_s'] / s['p95_s']:.2f}x |", flush=True)
    print(f"\nsimulated in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
