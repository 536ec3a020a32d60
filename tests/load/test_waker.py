"""The waker's guarantees: it never wakes before the target, its lead follows the sleeps'
recent lateness, and the CPU budget caps the spin. (How punctual it is on a given host is
a benchmark's question: benchmarks/issuer_timing.py.)"""

from __future__ import annotations

import asyncio
import time

from inferbench.load.runner import make_waker, new_loop
from inferbench.load.waker import FixedWaker, Waker


def test_the_lead_covers_the_recent_lateness_with_a_margin():
    waker = Waker(time.perf_counter_ns, min_lead_ns=50_000, initial_lead_ns=500_000)
    for _ in range(128):
        waker.learn(800_000)      # a long-idle host: sleeps end 0.8 ms late
    assert waker.lead_ns == 1_000_000
    for _ in range(128):
        waker.learn(20_000)       # a busy one: 20 us; the old lateness has left the window
    assert waker.lead_ns == 50_000  # not below the minimum


def test_a_rare_outlier_does_not_set_the_lead():
    waker = Waker(time.perf_counter_ns)
    for i in range(128):
        waker.learn(5_000_000 if i == 7 else 100_000)  # one 5 ms preemption in 128
    assert waker.lead_ns == 125_000


def test_the_spin_is_at_most_a_tenth_of_the_wait():
    waker = Waker(time.perf_counter_ns, min_lead_ns=50_000, initial_lead_ns=2_000_000)
    assert waker.lead_for(200_000_000) == 2_000_000   # 5 req/s: the learned lead
    assert waker.lead_for(5_000_000) == 500_000       # the budget: 10 % of a 5 ms wait
    assert waker.lead_for(100_000) == 50_000          # the minimum
    assert FixedWaker(time.perf_counter_ns, 200_000).lead_for(10**9) == 200_000


def test_it_never_wakes_before_the_target():
    clock = time.perf_counter_ns
    for waiter in ("select", "adaptive"):
        waker = make_waker(waiter, clock)

        async def waits(waker=waker) -> list[int]:
            early = []
            for gap_ms in (3, 0.2, 7, 1, 0, 12):
                target = clock() + int(gap_ms * 1e6)
                await waker.until(target)
                early.append(target - clock())
            return early

        with asyncio.Runner(loop_factory=lambda w=waiter: new_loop(w)) as runner:
            assert all(e <= 0 for e in runner.run(waits()))
