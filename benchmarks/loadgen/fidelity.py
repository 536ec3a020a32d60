"""Fidelity: our generator against queueing theory on the M/D/1 reference server.

For each utilisation rho, Poisson load at rate rho/D hits the reference server (one worker,
service time D). Three numbers per run:
- measured: the mean latency our generator reports (from the scheduled send);
- exact: the mean response time of the very arrivals the server logged, through Lindley's
  recursion (W_n = max(0, W_{n-1} + D - gap_n) + D): the queue's true outcome for that
  sample path, so the gap measured - exact is the instrument's own error;
- closed form: M/D/1's W = D + rho*D / (2(1-rho)), a yardstick with its own statistical
  spread over a finite run (stated: +- 2 standard errors from 20 batch means of the exact
  sample path).
It also checks the arrivals the server saw: their rate against the asked one and a
Kolmogorov-Smirnov distance of their gaps against the exponential law.

    .venv/bin/python benchmarks/loadgen/fidelity.py [--duration 60] [--service-ms 5]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from common import (
    ks_critical_1pct,
    ks_exponential,
    load_average,
    reference_server,
    v2_body,
)

from inferbench.load.runner import Request, StopRule, run_point


def lindley_response_ns(arrival_ns: np.ndarray, service_ns: int) -> np.ndarray:
    """Response times (wait + service) of a FIFO single-server queue, deterministic service."""
    out = np.empty(arrival_ns.size, dtype=np.int64)
    wait = 0
    prev = None
    for i, a in enumerate(arrival_ns.tolist()):
        if prev is not None:
            wait = max(0, wait + service_ns - (a - prev))
        prev = a
        out[i] = wait + service_ns
    return out


def batch_means_se(values: np.ndarray, batches: int = 20) -> float:
    means = np.array([b.mean() for b in np.array_split(values, batches)])
    return float(means.std(ddof=1) / math.sqrt(batches))


def gap_row(rho: float, ok: dict[str, np.ndarray], log: dict[str, np.ndarray],
            gap_ms: float) -> str:
    """The measured - exact gap as the sum of its parts: mean(done - scheduled) minus
    mean(completion - arrival) is late send + in + server write + out, over the same
    requests (the server logged each of ours once: the counts must agree)."""
    if ok["sent_ns"].size != log["arrival_ns"].size:
        return (f"| {rho:.1f} | {gap_ms:.3f} | counts differ ({ok['sent_ns'].size} answered, "
                f"{log['arrival_ns'].size} logged) | | | |")

    def mean_ms(x: np.ndarray) -> float:
        return float(x.astype(np.float64).mean() / 1e6)

    base = int(ok["scheduled_ns"][0])  # absolute ns do not fit a float64's mantissa
    late = mean_ms(ok["sent_ns"] - ok["scheduled_ns"])
    inbound = mean_ms(log["arrival_ns"] - base) - mean_ms(ok["sent_ns"] - base)
    write = mean_ms(log["written_ns"] - log["completion_ns"])
    outbound = mean_ms(ok["done_ns"] - base) - mean_ms(log["written_ns"] - base)
    return (f"| {rho:.1f} | {gap_ms:.3f} | {late:.3f} | {inbound:.3f} | {write:.3f} | "
            f"{outbound:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--service-ms", type=float, default=5.0)
    parser.add_argument("--rhos", default="0.3,0.5,0.7,0.9")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    d_ms = args.service_ms
    body, headers = v2_body()
    print(f"load average before: {load_average()}; D = {d_ms:g} ms, {args.duration:g} s per "
          "rho, Poisson, one worker")
    print("| rho | rate (req/s) | requests | measured mean (ms) | exact (Lindley) mean (ms) | "
          "measured vs exact | M/D/1 closed form (ms) | exact vs closed form | spread of the "
          "run (+-2 SE) | server-seen rate (req/s) | KS D vs Exp (1 % critical) | late sends "
          "(%) | server write late p99 (ms) |")
    print("|" + "---:|" * 13)
    gaps_rows = []
    with reference_server(d_ms, 1) as server:
        request = [Request(server.infer_url, body, headers)]
        for rho in (float(x) for x in args.rhos.split(",")):
            rate = rho / (d_ms / 1e3)
            run_point(request, rate_rps=rate, seed=args.seed + 99, warmup_s=0,
                      rule=StopRule(2.0, 0, 2.0), request_timeout_s=10)  # warm-up, unlogged
            time.sleep(0.5)
            server.clear_log()
            records = run_point(request, rate_rps=rate, seed=args.seed, warmup_s=0,
                                rule=StopRule(args.duration, 0, args.duration),
                                request_timeout_s=10)
            a = records.arrays()
            ok = (a["status"] == 200) & (a["done_ns"] >= 0)
            measured_ms = float(((a["done_ns"] - a["scheduled_ns"])[ok]).mean() / 1e6)
            late_pct = 100 * float(((a["sent_ns"] - a["scheduled_ns"]) > 1e6).mean())
            log = server.log()
            arrivals = log["arrival_ns"]
            exact = lindley_response_ns(arrivals, int(round(d_ms * 1e6))) / 1e6
            # The server's own bookkeeping is Lindley's recursion: they must agree exactly.
            assert np.array_equal((log["completion_ns"] - arrivals), (exact * 1e6).round()
                                  .astype(np.int64))
            exact_ms = float(exact.mean())
            closed_ms = d_ms + rho * d_ms / (2 * (1 - rho))
            spread_pct = 100 * 2 * batch_means_se(exact) / exact_ms
            gaps_s = np.diff(arrivals) / 1e9
            span_s = (arrivals[-1] - arrivals[0]) / 1e9
            seen_rate = (arrivals.size - 1) / span_s
            ks = ks_exponential(gaps_s, rate)
            crit = ks_critical_1pct(gaps_s.size)
            write_late = np.percentile((log["written_ns"] - log["completion_ns"]) / 1e6, 99)
            print(f"| {rho:.1f} | {rate:.0f} | {int(ok.sum())} | {measured_ms:.3f} | "
                  f"{exact_ms:.3f} | {100 * (measured_ms / exact_ms - 1):+.2f} % | "
                  f"{closed_ms:.3f} | {100 * (exact_ms / closed_ms - 1):+.2f} % | "
                  f"+-{spread_pct:.1f} % | {seen_rate:.1f} | {ks:.4f} ({crit:.4f}) | "
                  f"{late_pct:.2f} | {write_late:.2f} |", flush=True)
            gaps_rows.append(gap_row(rho, {k: v[ok] for k, v in a.items()}, log,
                                     measured_ms - exact_ms))
    print(f"load average after: {load_average()}")
    print()
    print("Where measured - exact goes (means over the point's requests, ms; one host, one "
          "clock):")
    print("| rho | measured - exact | late send (scheduled -> sent) | in (sent -> server "
          "arrival) | server write (completion -> written) | out (written -> client done) |")
    print("|" + "---:|" * 6)
    for row in gaps_rows:
        print(row)


if __name__ == "__main__":
    main()
