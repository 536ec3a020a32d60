"""Mean and p95 job completion time (JCT) of real benchmark jobs under each scheduling
policy, through the compose cluster (PostgreSQL, Redis, Airflow with the CeleryExecutor,
CPU workers), and how well the predictor foresaw each job's length.

    .venv/bin/python benchmarks/scheduling/cluster.py --jobs 12 --workers 2 --seed 1 \
        --out benchmarks/scheduling/results/cluster12.json

Each policy gets a fresh cluster (`docker-compose up` with the policy in its .env; the
policy is read by the Airflow components at start, and a fresh results database keeps one
policy's finished jobs out of the next one's history), two warm-up jobs (a model family the
mix does not use, so they teach the predictor nothing about the mix), then the whole mix
triggered over the REST API, one job every --gap-s seconds (0: all at once). JCT = last
task end - the submitter's clock just before the trigger; a job's actual length = last task
end - first task start; its predicted length is the one the cluster policy recorded
(sched_jobs). The mix: inferbench/scheduling/jobmix.py, benchmark_mix.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from inferbench.compose_cluster import ComposeCluster, build_images  # noqa: E402
from inferbench.pipeline import BENCHMARK_DAG_ID  # noqa: E402
from inferbench.scheduling.jobmix import benchmark_mix  # noqa: E402
from inferbench.scheduling.observe import (  # noqa: E402
    JobRecord,
    jct_stats,
    job_record,
    overlaps,
    shared_share,
    worker_orders,
)
from inferbench.scheduling.policies import Policy, WorkerLoad, place  # noqa: E402
from inferbench.scheduling.simulator import SimJob, replay, simulate  # noqa: E402
from inferbench.scheduling.workers import worker_names  # noqa: E402

WARMUP_SPEC = {"name": "warmup", "model": {"family": "lstm", "depth": 1, "width": 16,
                                           "input_shape": [4, 8]},
               "formats": ["onnx"], "platforms": ["onnxruntime"], "batch_sizes": [1],
               "workload": {"arrival": "closed_loop", "concurrency": 1}, "warmup_s": 1,
               "min_duration_s": 2, "min_requests": 20, "max_duration_s": 10,
               "slo": {"percentile": 99, "latency_ms": 100}}
DONE = ("success", "failed")


def wait_for(client, run_ids: list[str], timeout_s: float) -> dict[str, str]:
    """Each run's final state, once all have one."""
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while len(states) < len(run_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(run_ids) - len(states)} runs not done in {timeout_s} s")
        for run_id in run_ids:
            if run_id not in states:
                state = client.get_run(BENCHMARK_DAG_ID, run_id)["state"]
                if state in DONE:
                    states[run_id] = state
        time.sleep(3)
    return states


def stored(cluster: ComposeCluster, run_ids: list[str]) -> tuple[dict, dict]:
    """(decision, verdict) per run from the cluster's results database."""
    import sqlalchemy as sa

    from inferbench.scheduling.store import recorded

    engine = sa.create_engine(cluster.results_url)
    try:
        with engine.connect() as conn:
            decisions = {d["run_id"]: d for d in recorded(conn, BENCHMARK_DAG_ID, run_ids)}
            verdicts = dict(conn.execute(sa.text(
                "SELECT run_id, verdict FROM runs WHERE run_id = ANY(:r)"),
                {"r": run_ids}).all())
    finally:
        engine.dispose()
    return decisions, verdicts


def run_policy(policy: str, jobs: list[tuple[str, dict]], args, home: Path) -> dict[str, Any]:
    cluster = ComposeCluster.create(f"ibsched{policy.replace('_', '')}", home,
                                    workers=args.workers, INFERBENCH_SCHED_POLICY=policy)
    t0 = time.time()
    try:
        cluster.up()
        client = cluster.wait_for_api()
        warm = [client.trigger(BENCHMARK_DAG_ID, f"warmup_{policy}_{i}",
                               {**WARMUP_SPEC, "name": f"warmup-{i}"})["dag_run_id"]
                for i in range(args.workers)]
        wait_for(client, warm, 900)
        print(f"[{policy}] cluster up and warm in {time.time() - t0:.0f} s", flush=True)
        submitted: dict[str, tuple[str, float]] = {}
        for label, spec in jobs:
            run_id = f"{policy}_{label}"
            submitted[run_id] = (label, time.time())
            client.trigger(BENCHMARK_DAG_ID, run_id, spec)
            time.sleep(args.gap_s)
        states = wait_for(client, list(submitted), args.timeout_s)
        decisions, verdicts = stored(cluster, list(submitted))
        records, failed = [], {}
        for run_id, (label, t) in submitted.items():
            tis = client.task_instances(BENCHMARK_DAG_ID, run_id)
            if states[run_id] != "success":
                failed[label] = {ti["task_id"]: ti["state"] for ti in tis}
                continue
            records.append(job_record(run_id, label, t, decisions[run_id]["predicted_s"],
                                      [ti for ti in tis if ti["state"] == "success"]))
        print(f"[{policy}] mix done in {time.time() - t0:.0f} s since up; "
              f"{len(failed)} failed", flush=True)
    finally:
        if args.keep_logs:
            (home / "compose.log").write_text(cluster.compose("logs").stdout)
        cluster.down()
    stats = jct_stats([r.jct_s for r in records])
    return {"stats": stats, "overlaps": overlaps(records), "failed": failed,
            "moved": moved_at_dispatch(policy, args.workers, decisions.values()),
            "valid": sum(verdicts.get(r.run_id) == "VALID" for r in records),
            "makespan_s": max(r.end_s for r in records) - min(r.submitted_s for r in records),
            "worker_orders": worker_orders(records),
            "records": [{**r.__dict__, "jct_s": r.jct_s, "actual_s": r.end_s - r.start_s,
                         "verdict": verdicts.get(r.run_id)} for r in records],
            "decisions": {k: {**v, "submitted_at": str(v["submitted_at"])}
                          for k, v in decisions.items()}}


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = float(rank)
    return ranks


def prediction_summary(records) -> dict[str, float]:
    """How the predicted lengths compare with the actual ones: actual / predicted, and the
    rank correlation (Spearman's, no ties expected), which is what shortest-first ordering
    depends on."""
    predicted = [r.predicted_s for r in records]
    actual = [r.end_s - r.start_s for r in records]
    ratios = [a / p for a, p in zip(actual, predicted, strict=True)]
    rank_corr = statistics.correlation(_ranks(predicted), _ranks(actual)) \
        if len(records) > 2 else float("nan")
    return {"median_actual_over_predicted": statistics.median(ratios), "min": min(ratios),
            "max": max(ratios), "rank_correlation": rank_corr}


def replays(policy: str, n_workers: int, res: dict) -> bool:
    """Whether the simulator, given the run's submissions, placements and measured job
    lengths, orders every worker's jobs as the real scheduler did."""
    decided = {run_id: datetime.fromisoformat(d["submitted_at"]).timestamp()
               for run_id, d in res["decisions"].items()}
    records = [{**r, "decided_s": decided[r["run_id"]]} for r in res["records"]]
    simulated, _ = replay(records, n_workers, Policy(policy))
    return simulated == res["worker_orders"]


def clairvoyant_mean_s(n_workers: int, res: dict) -> float:
    """The mean JCT of the same jobs, submitted when they were, with their measured lengths
    known in advance and run shortest first on the freest worker (ws_sjf without aging, in
    the simulator, with the run's median gap between jobs on a worker): the least mean JCT
    any order reaches on that mix, the bound the policies are measured against."""
    records = res["records"]
    by_worker: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["start_s"]):
        by_worker.setdefault(r["worker"], []).append(r)
    gaps = sorted(b["start_s"] - a["end_s"] for js in by_worker.values()
                  for a, b in zip(js, js[1:], strict=False))
    jobs = [SimJob(r["label"], r["submitted_s"], r["end_s"] - r["start_s"],
                   r["end_s"] - r["start_s"]) for r in records]
    sim = simulate(jobs, n_workers, Policy.WS_SJF, aging_rate=0.0,
                   gap_s=max(0.0, statistics.median(gaps)) if gaps else 1.0)
    return statistics.fmean(r.jct_s for r in sim)


def moved_at_dispatch(policy: str, n_workers: int, decisions) -> int:
    """Jobs a stealing policy moved after placing them: the recorded worker is not the one
    placement chose from the loads it saw at trigger."""
    if not Policy(policy).steals:
        return 0
    workers = worker_names(n_workers, "cpu")
    return sum(place(Policy(policy), workers,
                     {w: WorkerLoad(int(n), work) for w, (n, work) in d["loads"].items()},
                     None) != d["worker"] for d in decisions)


def table(results: dict[str, dict]) -> str:
    base = results.get("rr_fcfs", {}).get("stats")
    lines = ["| policy | mean JCT (s) | p50 (s) | p95 JCT (s) | makespan (s) | mean: rr_fcfs / "
             "policy | p95: rr_fcfs / policy | overlaps | job time sharing its worker | "
             "moved at dispatch | VALID | actual / "
             "predicted length (median, range) | rank correlation | simulator replays the order | "
             "mean JCT with exact lengths (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|"]
    for policy, res in results.items():
        s, p = res["stats"], res["prediction"]
        ratio = (f"{base['mean_s'] / s['mean_s']:.2f}x", f"{base['p95_s'] / s['p95_s']:.2f}x") \
            if base else ("-", "-")
        lines.append(
            f"| {policy} | {s['mean_s']:.1f} | {s['p50_s']:.1f} | {s['p95_s']:.1f} | "
            f"{res['makespan_s']:.1f} | {ratio[0]} | {ratio[1]} | {len(res['overlaps'])} | "
            f"{res['shared_share']:.0%} | {res['moved']} | {res['valid']} of {len(res['records'])} "
            f"({len(res['failed'])} failed) | {p['median_actual_over_predicted']:.2f} "
            f"({p['min']:.2f}-{p['max']:.2f}) | {p['rank_correlation']:.2f} | "
            f"{'yes' if res['replays'] else 'no'} | {res['clairvoyant_mean_s']:.1f} |")
    return "\n".join(lines)


def summarise(policy: str, n_workers: int, res: dict) -> None:
    """Add what is derived from a policy's recorded jobs: the prediction's error, how much
    of their time jobs shared a worker, and what the simulator says (whether it replays the
    real order, the clairvoyant bound on that run's jobs). A fresh run and a reprinted one
    go through here alike."""
    records = _records(res)
    res["prediction"] = prediction_summary(records)
    res["shared_share"] = shared_share(records)
    res["replays"] = replays(policy, n_workers, res)
    res["clairvoyant_mean_s"] = clairvoyant_mean_s(n_workers, res)


def _records(res: dict) -> list[JobRecord]:
    """A saved run's job records as JobRecords (the saved ones carry derived fields too)."""
    fields = set(JobRecord.__dataclass_fields__)
    return [JobRecord(**{k: v for k, v in r.items() if k in fields}) for r in res["records"]]


def retable(path: Path) -> None:
    """Reprint a saved run's table with this script's summaries."""
    saved = json.loads(path.read_text())
    for policy, res in saved["policies"].items():
        summarise(policy, saved["args"]["workers"], res)
    print(table(saved["policies"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gap-s", type=float, default=0.0,
                    help="seconds between two triggers (0: all at once)")
    ap.add_argument("--policies", default=",".join(p.value for p in Policy))
    ap.add_argument("--timeout-s", type=float, default=3600)
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument("--out", type=Path, help="where the run is saved (JSON)")
    ap.add_argument("--retable", type=Path, help="reprint a saved run's table and exit")
    args = ap.parse_args()
    if args.retable:
        retable(args.retable)
        return 0
    if args.out is None:
        ap.error("--out is required to run")

    t0 = time.time()
    build_images()
    print(f"images built in {time.time() - t0:.0f} s", flush=True)
    jobs = benchmark_mix(args.jobs, seed=args.seed)
    root = Path(tempfile.mkdtemp(prefix="inferbench-clustersched-"))
    out: dict[str, Any] = {"args": {k: (str(v) if isinstance(v, Path) else v)
                                    for k, v in vars(args).items()},
                           "jobs": dict(jobs), "policies": {}}
    try:
        for policy in args.policies.split(","):
            out["policies"][policy] = run_policy(policy, jobs, args, root / policy)
            out["policies"][policy]["loadavg_after"] = os.getloadavg()
            summarise(policy, args.workers, out["policies"][policy])
            print(table({policy: out["policies"][policy]}).splitlines()[-1], flush=True)
    finally:
        if not args.keep_logs:
            shutil.rmtree(root, ignore_errors=True)
        out["wall_s"] = time.time() - t0
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1, default=str))
    print("\n" + table(out["policies"]))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min) at the end: {load}")
    print(f"\n{time.time() - t0:.0f} s in all; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
