"""Does the embedded Airflow, merely idle on the same cores, make the load generator late?

Side by side in one run, the same open-loop points against the reference server (1 ms
service, 64 workers: it never queues) with the embedded Airflow in three states:
- stopped (`inferbench down`);
- idle with the previous default: the DAG files re-parsed every 10 s, every component at
  the same CPU priority as the benchmark (INFERBENCH_DAG_REFRESH_S=10,
  INFERBENCH_AIRFLOW_NICE=0);
- idle with the quiet default: parsed every 300 s, dag-processor and api-server at nice 10;
- the same, with the issuer at the priority the load stage gives it (load/priority.py).
The first three run the issuer at the default niceness, to show Airflow's part alone. Each
state runs every rate `--repeats` times; each point is preceded by the 1 s host-stall probe
the load stage takes before every rung. Prints a Markdown table.

    .venv/bin/python benchmarks/loadgen/airflow_noise.py [--rates 50,1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import numpy as np
from common import ROOT, lateness, lateness_cells, load_average, reference_server, v2_body

from inferbench.load.priority import DEFAULT_ISSUER_NICE, issuer_priority
from inferbench.load.runner import Request, StopRule, run_point
from inferbench.metrics.host_noise import host_stall_pct

INFERBENCH = str(ROOT / ".venv" / "bin" / "inferbench")
QUIET = "idle, quiet default (parse every 300 s, nice 10)"
# state -> (the environment Airflow starts with, or None: stopped; the issuer's niceness)
STATES = {
    "stopped": (None, 0),
    "idle, previous default (parse every 10 s, nice 0)": ({"INFERBENCH_DAG_REFRESH_S": "10",
                                                           "INFERBENCH_AIRFLOW_NICE": "0"}, 0),
    QUIET: ({}, 0),
    f"{QUIET}, issuer at nice {DEFAULT_ISSUER_NICE}": ({}, DEFAULT_ISSUER_NICE),
}


def airflow(command: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([INFERBENCH, command], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, **(env or {})})


def point(url: str, rate: float, seconds: float, seed: int,
          nice: int) -> tuple[float, float, float, float]:
    """(late > 1 ms %, mean lateness ms, p99 lateness ms, host stall %) of one point."""
    stall = host_stall_pct(1.0)
    body, headers = v2_body()
    with issuer_priority(nice, realtime=None) as got:
        if got.nice != nice:
            raise SystemExit(f"could not set the issuer's niceness to {nice} (got {got}): "
                             "run as root")
        records = run_point([Request(url, body, headers)], rate_rps=rate, seed=seed,
                            warmup_s=2.0, rule=StopRule(seconds, 0, seconds),
                            request_timeout_s=10)
    return (*lateness(records), stall)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="50,1000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle-s", type=float, default=30.0,
                        help="wait after Airflow starts (its first parse) before measuring")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rows = []
    print(f"load average before: {load_average()}; {args.seconds:g} s per point, Poisson, "
          f"{args.repeats} repeats")
    running: dict[str, str] | None = None
    for state, (env, nice) in STATES.items():
        if env != running:
            airflow("down")
            if env is not None:
                airflow("up", env)
                time.sleep(args.settle_s)
            running = env
        with reference_server(1.0, 64) as server:
            for rate in rates:
                for k in range(args.repeats):
                    rows.append((state, rate, *point(server.infer_url, rate, args.seconds,
                                                     seed=k + 1, nice=nice)))
                    print(f"  {state} {rate:g} req/s #{k + 1}: {rows[-1][2]:.2f} % late",
                          flush=True)
    airflow("down")
    print(f"load average after: {load_average()}")
    print("| Airflow | rate (req/s) | late sends > 1 ms (%), each repeat | mean lateness (ms) | "
          "p99 lateness (ms) | host stall before (%) |")
    print("|---|---:|---|---:|---:|---:|")
    for state in STATES:
        for rate in rates:
            mine = [r for r in rows if r[0] == state and r[1] == rate]
            print(f"| {state} | {rate:g} | {lateness_cells(mine)} | "
                  f"{np.mean([r[5] for r in mine]):.2f} |")


if __name__ == "__main__":
    main()
