"""Mean and p95 job completion time (JCT) of one job mix under each scheduling policy,
through the real embedded Airflow scheduler (3 worker pools, stand-in jobs that sleep).

    .venv/bin/python benchmarks/scheduling/run.py --jobs 36 --workers 3 --seed 1 \
        --out benchmarks/scheduling/results/mix36.json

Each policy gets a fresh start of the Airflow components (the policy is read at start), one
warm-up job (the first tasks after a start pay the executor's cold imports), then the whole
mix triggered at once. JCT = last task end - the submitter's clock just before the trigger.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
# harness.py sits beside this script (its folder is sys.path[0] when run as one).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import decisions, run_mix, start_stack  # noqa: E402

from inferbench.netutil import free_port  # noqa: E402
from inferbench.scheduling.jobmix import job_mix  # noqa: E402
from inferbench.scheduling.observe import jct_stats, overlaps, worker_orders  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=36)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-scale", type=float, default=0.06)
    ap.add_argument("--aging-rate", type=float, default=0.1)
    ap.add_argument("--policies", default="rr_fcfs,rr_sjf,qa_sjf")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="inferbench-schedbench-"))
    home, port = root / "home", free_port()
    jobs = job_mix(args.jobs, seed=args.seed, time_scale=args.time_scale)
    warmup = job_mix(1, seed=10_000 + args.seed, time_scale=0.01)
    out = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "jobs": [j.__dict__ for j in jobs], "policies": {}}
    try:
        for policy in args.policies.split(","):
            t0 = time.time()
            url = start_stack(home, port, policy, args.workers, args.aging_rate)
            run_mix(url, warmup, 0.01, say=lambda _m: None)
            print(f"[{policy}] stack up and warm in {time.time() - t0:.0f} s", flush=True)
            records = run_mix(url, jobs, args.time_scale,
                              say=lambda m, p=policy: print(f"[{p}] {m}", flush=True))
            stats = jct_stats([r.jct_s for r in records])
            bad = overlaps(records)
            makespan = max(r.end_s for r in records) - min(r.submitted_s for r in records)
            out["policies"][policy] = {
                "stats": stats, "makespan_s": makespan, "overlaps": bad,
                "worker_orders": worker_orders(records),
                "records": [{**r.__dict__, "jct_s": r.jct_s} for r in records],
                "decisions": [{**d, "submitted_at": d["submitted_at"].isoformat()}
                              for d in decisions([r.run_id for r in records])]}
            print(f"[{policy}] mean JCT {stats['mean_s']:.1f} s, p95 {stats['p95_s']:.1f} s, "
                  f"makespan {makespan:.1f} s, overlaps {len(bad)}", flush=True)
    finally:
        from inferbench.embedded.airflow import stop_airflow
        from inferbench.embedded.postgres import stop_postgres

        stop_airflow(home)
        stop_postgres(home)
        shutil.rmtree(root, ignore_errors=True)
    base = out["policies"].get("rr_fcfs", {}).get("stats")
    print("\n| policy | mean JCT (s) | p95 JCT (s) | mean: rr_fcfs / policy | p95: rr_fcfs / "
          "policy | overlaps |\n|---|---|---|---|---|---|")
    for policy, res in out["policies"].items():
        s = res["stats"]
        ratio = (f"{base['mean_s'] / s['mean_s']:.2f}x", f"{base['p95_s'] / s['p95_s']:.2f}x") \
            if base else ("-", "-")
        print(f"| {policy} | {s['mean_s']:.1f} | {s['p95_s']:.1f} | {ratio[0]} | {ratio[1]} | "
              f"{len(res['overlaps'])} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
