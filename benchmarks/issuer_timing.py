"""How late does each way of waiting for a scheduled send wake up, on this host?

Side by side in one run, same Poisson schedules: `time.sleep`, plain `asyncio.sleep`, and
the load generator's own wakers (asyncio sleep + a spin: fixed, or learned as
load/waker.py does). No server: this is the timer floor under any load generator. Prints a
Markdown table (late = > 1 ms; mean lateness, what adds to every measured latency).

    .venv/bin/python benchmarks/issuer_timing.py [--seconds 10] [--rates 5,50,200,1000,4000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from inferbench.load.arrivals import poisson_offsets_ns
from inferbench.load.runner import _Clock, make_waker, new_loop

sys.path.insert(0, str(Path(__file__).resolve().parent / "loadgen"))
from common import load_average  # noqa: E402


def _stats(late_ns: list[int], cpu_s: float, seconds: float) -> tuple:
    late_ms = np.asarray(late_ns) / 1e6
    return (100 * float((late_ms > 1).mean()), float(late_ms.mean()),
            float(np.percentile(late_ms, 99)), 100 * cpu_s / seconds)


def with_time_sleep(rate: float, seconds: float, seed: int) -> tuple:
    offsets = itertools.islice(poisson_offsets_ns(rate, seed), int(rate * seconds))
    t0, late, cpu0 = time.perf_counter_ns(), [], time.process_time()
    for off in offsets:
        delay = t0 + off - time.perf_counter_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        late.append(time.perf_counter_ns() - (t0 + off))
    return _stats(late, time.process_time() - cpu0, seconds)


async def _asyncio(rate: float, seconds: float, seed: int, waiter: str | None) -> tuple:
    clock = _Clock()
    waker = None if waiter is None else make_waker(waiter, clock.now)
    t0, late, cpu0 = clock.now(), [], time.process_time()
    for off in itertools.islice(poisson_offsets_ns(rate, seed), int(rate * seconds)):
        target = t0 + off
        if waker is not None:
            await waker.until(target)
        else:
            delay = target - clock.now()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
        late.append(clock.now() - target)
    return _stats(late, time.process_time() - cpu0, seconds)


def _on_select_loop(coro) -> tuple:
    with asyncio.Runner(loop_factory=lambda: new_loop("select")) as runner:
        return runner.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="5,50,200,1000,4000")
    args = parser.parse_args()
    print(f"load average before: {load_average()}; {args.seconds:g} s per row, Poisson, no "
          "server")
    print("| rate (req/s) | waiter | late > 1 ms (%) | mean lateness (ms) | p99 lateness (ms) "
          "| CPU (% of a core) |")
    print("|---:|---|---:|---:|---:|---:|")
    s = args.seconds
    for rate in (float(r) for r in args.rates.split(",")):
        rows = {
            "time.sleep": with_time_sleep(rate, s, 1),
            "asyncio.sleep": asyncio.run(_asyncio(rate, s, 1, None)),
            "spin (epoll + 4 ms spin)": asyncio.run(_asyncio(rate, s, 1, "spin")),
            "select (select() + 0.2 ms spin)": _on_select_loop(_asyncio(rate, s, 1, "select")),
            "adaptive (select() + learned spin; the default)": _on_select_loop(
                _asyncio(rate, s, 1, "adaptive")),
        }
        for name, (late_pct, mean, p99, cpu) in rows.items():
            print(f"| {rate:g} | {name} | {late_pct:.2f} | {mean:.3f} | {p99:.3f} | "
                  f"{cpu:.1f} |", flush=True)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
