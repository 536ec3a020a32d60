"""Does the prediction from light profiling match the exact M/D/c queue on the reference server?

For each worker count c (`--workers`), a reference server (an M/D/c queue: c workers, a
deterministic service time D, `--service-ms`) is profiled lightly with `profile_levels`
(closed loop, 1..c+2 requests in flight and more while the throughput still grows,
`--profile-s` seconds each), and the prediction
(analysis/prediction.py) is built from that profile with both M/D/c waiting-time
approximations, "exact" (Crommelin) and "cosmetatos". Then, at each utilisation rho
(`--rhos`) of the TRUE capacity (rate = rho * c / D), four numbers:
- exact M/D/c mean: D + E[Wq] of M/D/c with the true D (analysis/queueing.py), the
  theoretical queue alone: no client, no network;
- exact (this sample): the same queue's outcome for the very arrivals the server logged,
  by the FIFO recursion start_n = max(arrival_n, start_{n-c} + D) (Lindley's for c = 1);
  it differs from the closed form by the run's statistical spread only;
- predicted: the mean and p99 from the profile at that rate (exact and Cosmetatos);
- measured: an open-loop Poisson point of our generator (`--duration` s after a 1 s
  warm-up), mean and p99 of done - scheduled over the answered requests.

The subtlety: the prediction includes the time spent outside the queue (client, loopback,
HTTP handling on both sides: `model.overhead_ms`, O = L_c - D_c from the profile), which
the theoretical queue does not. So "prediction vs exact" compares predicted - O with the
exact M/D/c mean (the queue model's accuracy: the goal is within 2 % at rho 0.3-0.9),
and the full prediction is compared with what the generator measured. The queue check
uses the closed-loop levels alone; the full prediction also has the open-loop probes (what
an arrival at an idle server costs, the service under timer-driven load).
Note also that profiling times a request from its send, the measured points from its
scheduled send (a late send counts), and that the profiled D_c = c / X_sat is the
server's service time only when the levels above c keep all c workers busy.

Prints two Markdown tables (the points, then the profiled model per c) and the load
average before and after; one process, the servers one after the other.

    .venv/bin/python benchmarks/prediction/reference.py [--workers 1,2,4] [--service-ms 5] \
        [--profile-s 3] [--rhos 0.3,0.5,0.7,0.8,0.9] [--duration 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loadgen"))
from common import load_average, v2_body  # noqa: E402  (also puts the repository on the path)

from analysis.prediction import Prediction, predict  # noqa: E402
from analysis.queueing import mdc_mean_wait_ms  # noqa: E402
from inferbench.load.profile import profile_levels  # noqa: E402
from inferbench.load.runner import Request, StopRule, run_point  # noqa: E402
from inferbench.servers.reference_server import ReferenceServerProcess  # noqa: E402


def fifo_response_ns(arrival_ns: np.ndarray, service_ns: int, workers: int) -> np.ndarray:
    """Response times (wait + service) of a FIFO queue with `workers` servers and a
    deterministic service: request n starts when it arrives or when request n - c is done,
    whichever is later (completions leave in arrival order, so the worker request n - c
    frees is the first free one). Exact for the given arrivals, from an empty queue."""
    arrivals = arrival_ns.tolist()
    start = [0] * len(arrivals)
    for n, a in enumerate(arrivals):
        start[n] = a if n < workers else max(a, start[n - workers] + service_ns)
    return np.asarray(start, dtype=np.int64) + service_ns - arrival_ns


def pct(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.2f}"


def run_workers(c: int, args: argparse.Namespace, rhos: list[float],
                models: list[str]) -> None:
    d_ms = args.service_ms
    body, headers = v2_body()
    server = ReferenceServerProcess(d_ms, c)
    try:
        request = [Request(server.infer_url, body, headers)]
        levels = profile_levels(request, c, profile_s=args.profile_s, warmup_s=1.0,
                                request_timeout_s=10, seed=args.seed)
        closed = [lv for lv in levels if lv.in_flight >= 1]  # no open-loop probes
        preds: dict[str, Prediction] = {
            a: predict(closed, c, approximation=a) for a in ("exact", "cosmetatos")}
        full = predict(levels, c)
        model = full.model
        true_cap = 1000.0 * c / d_ms
        profile = ", ".join(f"{lv.in_flight}: {lv.throughput_rps:.1f} / {lv.mean_ms:.3f}"
                            for lv in sorted(levels, key=lambda lv: lv.in_flight))
        models.append(
            f"| {c} | {model.name} | {', '.join(f'{x:.3f}' for x in model.service_ms)} "
            f"| {model.capacity_rps:.1f} ({pct(model.capacity_rps, true_cap)} %) | "
            f"{model.overhead_ms:.3f} | {model.cs2:.4f} | {'; '.join(model.caveats) or '-'} | "
            f"{profile} |")
        overhead = model.overhead_ms
        for i, rho in enumerate(rhos):
            rate = rho * c / d_ms * 1000.0
            exact_ms = d_ms + mdc_mean_wait_ms(rate / 1000.0, d_ms, c)
            queue_ms = preds["exact"].mean_ms(rate)
            point = full.at(rate)
            cosm_ms = preds["cosmetatos"].mean_ms(rate)
            records = run_point(request, rate_rps=rate, seed=args.seed + 100 * c + i,
                                warmup_s=1.0,
                                rule=StopRule(args.duration, 100, 3 * args.duration),
                                request_timeout_s=10, on_measure_start=server.clear_log)
            a = records.arrays()
            ok = (a["status"] == 200) & (a["done_ns"] >= 0)
            latency_ms = (a["done_ns"] - a["scheduled_ns"])[ok] / 1e6
            measured_ms = float(latency_ms.mean())
            measured_p99 = float(np.percentile(latency_ms, 99))
            log = server.log()
            service_ns = int(round(d_ms * 1e6))
            sample = fifo_response_ns(log["arrival_ns"], service_ns, c)
            # The server's own bookkeeping is the same recursion: count disagreements.
            differ = int((sample != log["completion_ns"] - log["arrival_ns"]).sum())
            sample_ms = float(sample.mean() / 1e6)
            logged = "" if log["arrival_ns"].size == ok.sum() else (
                f" (logged {log['arrival_ns'].size})")

            def ms(v: float | None) -> str:
                return "unstable" if v is None else f"{v:.3f}"

            def vs(v: float | None, ref: float) -> str:
                return "-" if v is None else pct(v, ref)

            queue_e = None if queue_ms is None else queue_ms - overhead
            queue_c = None if cosm_ms is None else cosm_ms - overhead
            print(f"| {c} | {rho:.1f} | {rate:.1f} | {int(ok.sum())}{logged} | "
                  f"{exact_ms:.3f} | {sample_ms:.3f}{'' if not differ else f' ({differ} differ)'}"
                  f" | {ms(queue_ms)} / {ms(cosm_ms)} | {vs(queue_e, exact_ms)} / "
                  f"{vs(queue_c, exact_ms)} | {measured_ms:.3f} | "
                  f"{vs(point.mean_ms, measured_ms)} | {measured_p99:.3f} | "
                  f"{ms(point.p99_ms)} | {vs(point.p99_ms, measured_p99)} |", flush=True)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--service-ms", type=float, default=5.0)
    parser.add_argument("--profile-s", type=float, default=3.0)
    parser.add_argument("--rhos", default="0.3,0.5,0.7,0.8,0.9")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workers = [int(x) for x in args.workers.split(",")]
    rhos = [float(x) for x in args.rhos.split(",")]
    print(f"load average before: {load_average()}; D = {args.service_ms:g} ms, profile "
          f"{args.profile_s:g} s per level, {args.duration:g} s per point, Poisson")
    print("Does the prediction from light profiling match the exact M/D/c queue on the "
          "reference server?")
    print("| c | rho | rate (req/s) | requests | exact M/D/c mean (ms) | exact (this sample) "
          "mean (ms) | predicted mean, exact / cosmetatos (ms) | prediction - overhead vs "
          "exact (%), exact / cosmetatos | measured mean (ms) "
          "| predicted vs measured mean (%) | measured p99 (ms) | predicted p99 (ms) | p99 "
          "error (%) |")
    print("|" + "---:|" * 13)
    models: list[str] = []
    for c in workers:
        run_workers(c, args, rhos, models)
    print(f"load average after: {load_average()}")
    print()
    print("Profiled models (D_k: service per worker with k in flight; capacity against the "
          "true c / D):")
    print("| c | model | D_1..D_c (ms) | capacity (req/s) | overhead O (ms) | Cs^2 | "
          "caveats | levels (in flight: req/s / mean ms) |")
    print("|---:|---|---|---:|---:|---:|---|---|")
    for row in models:
        print(row)


if __name__ == "__main__":
    main()
