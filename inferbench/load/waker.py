"""Waking up on time for a scheduled send: sleep until shortly before it, spin the rest.

The sleep's own lateness is the host's, and it depends on how long the process slept: after
a long sleep an idle (virtual) CPU takes longest to come back (on the 2-vCPU VM this was
measured on, a select() timeout after ~200 ms of sleep returned 0.3 ms late at the median and
up to 1.8 ms late; after ~1 ms of sleep, tens of microseconds). A fixed spin is therefore
either too short at low rates (sends late) or wasted CPU at high rates. The Waker learns it:
it records how late each of its sleeps ended, and sleeps until a high quantile of that
lateness (plus a margin) before the send, spinning the rest.

CPU budget: the spin before a send is at most `max_share` of the wait before it (10 %), and
at least `min_lead_ns`; so the waker itself costs at most about a tenth of a core, plus the
minimum spin per send at rates where the waits are shorter than that minimum.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

# Sleeps remembered for the quantile, and how often the lead is recomputed from them.
_WINDOW = 128
_RECOMPUTE_EVERY = 16
# The lead covers this quantile of the recent sleep lateness, times a margin.
_QUANTILE = 0.99
_MARGIN = 1.25


class Waker:
    """Waits until a wall-clock ns on an event loop whose timer is punctual to the
    microsecond (the select() loop: see runner.new_loop), with a learned spin lead."""

    def __init__(self, now_ns: Callable[[], int], *, min_lead_ns: int = 50_000,
                 initial_lead_ns: int = 500_000, max_share: float = 0.10) -> None:
        self._now = now_ns
        self.min_lead_ns = min_lead_ns
        self.max_share = max_share
        self.lead_ns = initial_lead_ns    # the learned lead, before the budget caps it
        self._lateness: deque[int] = deque(maxlen=_WINDOW)  # the last sleeps' lateness
        self._count = 0

    def lead_for(self, wait_ns: int) -> int:
        """How long before the target to stop sleeping, for a wait of `wait_ns`."""
        budget = max(self.min_lead_ns, int(self.max_share * wait_ns))
        return max(self.min_lead_ns, min(self.lead_ns, budget))

    def learn(self, late_ns: int) -> None:
        """Remember how late a sleep ended; now and then, recompute the lead."""
        self._lateness.append(late_ns)
        self._count += 1
        if self._count % _RECOMPUTE_EVERY == 0:
            ordered = sorted(self._lateness)
            high = ordered[min(len(ordered) - 1, int(_QUANTILE * len(ordered)))]
            self.lead_ns = max(self.min_lead_ns, int(_MARGIN * max(high, 0)))

    async def until(self, target_ns: int) -> None:
        now = self._now()
        wait = target_ns - now
        lead = self.lead_for(wait)
        if wait > lead:
            wake = target_ns - lead
            await asyncio.sleep((wake - now) / 1e9)
            self.learn(self._now() - wake)
        while self._now() < target_ns:
            await asyncio.sleep(0)


class FixedWaker(Waker):
    """The same wait with a fixed lead (no learning): the older waiters, kept to compare."""

    def __init__(self, now_ns: Callable[[], int], lead_ns: int) -> None:
        super().__init__(now_ns, min_lead_ns=lead_ns, initial_lead_ns=lead_ns, max_share=0.0)

    def learn(self, late_ns: int) -> None:
        pass
