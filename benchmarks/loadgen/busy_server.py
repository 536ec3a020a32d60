"""When the server under test keeps every core busy, does the issuer still send on time, and
what does its priority take from the server?

On a small host the load generator shares the cores with the server. Near capacity the
server's threads keep every core busy, and a woken issuer may wait for a core: its sends go
out late and the rung is not a valid measurement. Side by side in one run, the same
open-loop points against the reference server (1 ms service, 64 workers: it never queues)
while CPU-bound processes, one per core, in a session of their own (as a serving platform
runs) stand for the busy server, with the issuer at each priority it can take:
- niceness 0 (the kernel's default);
- niceness -10, its thread and its session's scheduling group;
- SCHED_FIFO, the lowest real-time priority, on its thread.
Each point reports the late sends and the busy processes' work per second, relative to the
same processes' rate with no issuer running, measured between the points (what the issuer
took from the "server").

    .venv/bin/python benchmarks/loadgen/busy_server.py [--rates 50,1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import lateness, lateness_cells, load_average, reference_server, v2_body

from inferbench.load.priority import (
    DEFAULT_ISSUER_NICE,
    DEFAULT_ISSUER_REALTIME,
    issuer_priority,
)
from inferbench.load.runner import Request, StopRule, run_point

# Each busy process counts its loop's iterations and writes the count when stopped.
BUSY = """
import signal, sys, time
n = 0
def stop(*_):
    open(sys.argv[1], "w").write(f"{n} {time.monotonic() - t0}")
    raise SystemExit
signal.signal(signal.SIGTERM, stop)
t0 = time.monotonic()
while True:
    n += 1
"""
MODES = {"nice 0": {"nice": 0, "realtime": None},
         f"nice {DEFAULT_ISSUER_NICE} (thread and group)": {"nice": DEFAULT_ISSUER_NICE,
                                                           "realtime": None},
         f"SCHED_FIFO {DEFAULT_ISSUER_REALTIME} (thread; the default)": {
             "nice": DEFAULT_ISSUER_NICE, "realtime": DEFAULT_ISSUER_REALTIME}}


class BusyServer:
    """One CPU-bound process per core, in a new session; their iterations per second."""

    def __init__(self, workdir: Path) -> None:
        self.files = [workdir / f"busy{k}.txt" for k in range(os.cpu_count() or 1)]
        self.procs = [subprocess.Popen([sys.executable, "-c", BUSY, str(f)],
                                       start_new_session=True) for f in self.files]

    def stop(self) -> float:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait()
        rates = []
        for f in self.files:
            n, seconds = f.read_text().split()
            rates.append(int(n) / float(seconds))
        return sum(rates)


def busy_rate(workdir: Path, seconds: float) -> float:
    busy = BusyServer(workdir)
    time.sleep(seconds)
    return busy.stop()


def point(url: str, rate: float, seconds: float, seed: int, mode: dict,
          workdir: Path) -> tuple[float, float, float, float]:
    """(late > 1 ms %, mean lateness ms, p99 lateness ms, busy work per s) of one point."""
    body, headers = v2_body()
    busy = BusyServer(workdir)
    try:
        with issuer_priority(**mode) as got:
            if (got.nice, got.realtime) != (mode["nice"], mode["realtime"]):
                raise SystemExit(f"could not take the priority {mode} (got {got}): run as root")
            records = run_point([Request(url, body, headers)], rate_rps=rate, seed=seed,
                                warmup_s=1.0, rule=StopRule(seconds, 0, seconds),
                                request_timeout_s=10)
    finally:
        work = busy.stop()
    return (*lateness(records), work)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="50,1000")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="busy-"))
    print(f"load average before: {load_average()}; {args.seconds:g} s per point, Poisson, "
          f"{args.repeats} repeats, {os.cpu_count()} busy processes")
    rows, alone = [], []
    with reference_server(1.0, 64) as server:
        for k in range(args.repeats):
            for rate in rates:
                alone.append(busy_rate(workdir, args.seconds))
                for name, mode in MODES.items():  # interleaved: drift hits every mode alike
                    rows.append((name, rate, *point(server.infer_url, rate, args.seconds,
                                                    seed=k + 1, mode=mode, workdir=workdir)))
                    print(f"  {name} {rate:g} req/s #{k + 1}: {rows[-1][2]:.2f} % late",
                          flush=True)
    print(f"load average after: {load_average()}")
    print("| issuer priority | rate (req/s) | late sends > 1 ms (%), each repeat | "
          "mean lateness (ms) | p99 lateness (ms) | busy server's work (% of alone) |")
    print("|---|---:|---|---:|---:|---:|")
    for rate in rates:
        for name in MODES:
            mine = [r for r in rows if r[0] == name and r[1] == rate]
            print(f"| {name} | {rate:g} | {lateness_cells(mine)} | "
                  f"{100 * np.mean([r[5] for r in mine]) / np.mean(alone):.1f} |")


if __name__ == "__main__":
    main()
