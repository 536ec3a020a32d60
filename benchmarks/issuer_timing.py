"""How late does each way of waiting for a scheduled send wake up, on this host?

Side by side in one run, same Poisson schedules: `time.sleep`, plain `asyncio.sleep`, and
the load generator's own `_sleep_until` (asyncio sleep + a short spin). No server: this is
the timer floor under any load generator. Prints a Markdown table (late = > 1 ms).

    .venv/bin/python benchmarks/issuer_timing.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

import numpy as np

from inferbench.load.arrivals import poisson_offsets_ns
from inferbench.load.runner import WAITERS, _Clock, _sleep_until, new_loop


def _stats(late_ns: list[int], cpu_s: float, seconds: float) -> tuple[float, float, float]:
    late_ms = np.asarray(late_ns) / 1e6
    return 100 * float((late_ms > 1).mean()), float(np.percentile(late_ms, 99)), \
        100 * cpu_s / seconds


def with_time_sleep(rate: float, seconds: float, seed: int) -> tuple:
    offsets = itertools.islice(poisson_offsets_ns(rate, seed), int(rate * seconds))
    t0, late, cpu0 = time.perf_counter_ns(), [], time.process_time()
    for off in offsets:
        delay = t0 + off - time.perf_counter_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        late.append(time.perf_counter_ns() - (t0 + off))
    return _stats(late, time.process_time() - cpu0, seconds)


async def _asyncio(rate: float, seconds: float, seed: int, spin: bool,
                  spin_ns: int = WAITERS["spin"]) -> tuple:
    clock = _Clock()
    t0, late, cpu0 = clock.now(), [], time.process_time()
    for off in itertools.islice(poisson_offsets_ns(rate, seed), int(rate * seconds)):
        target = t0 + off
        if spin:
            await _sleep_until(clock, target, spin_ns)
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
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print("| rate (req/s) | waiter | late > 1 ms (%) | p99 lateness (ms) | CPU (% of a core) |")
    print("|---:|---|---:|---:|---:|")
    for rate in (40, 200, 1000):
        rows = {
            "time.sleep": with_time_sleep(rate, args.seconds, 1),
            "asyncio.sleep": asyncio.run(_asyncio(rate, args.seconds, 1, spin=False)),
            "inferbench issuer, spin (epoll + 4 ms spin)": asyncio.run(
                _asyncio(rate, args.seconds, 1, spin=True)),
            "inferbench issuer, select (select() loop + 0.2 ms spin)": _on_select_loop(
                _asyncio(rate, args.seconds, 1, spin=True, spin_ns=WAITERS["select"])),
        }
        for name, (late_pct, p99, cpu) in rows.items():
            print(f"| {rate} | {name} | {late_pct:.2f} | {p99:.2f} | {cpu:.0f} |")


if __name__ == "__main__":
    main()
