"""The load generator's CPU priority while it measures.

On a small host the server under test shares the cores with the load generator. When the
server keeps every core busy, the kernel lets a woken issuer wait for a core, and its sends
go out late: the instrument then measures its own queueing. A real deployment has its
clients on other machines; here the issuer thread asks for a higher priority (a lower
niceness) for the duration of a point, so it gets a core the moment it wakes. It spends a
few percent of a core, so the server loses next to nothing.

Only the calling thread is changed (Linux nice values are per thread), never the server,
which was started before and keeps its own. Raising priority needs CAP_SYS_NICE (root, or
an RLIMIT_NICE that allows it); without it the issuer keeps the niceness it has, and the
point records the niceness it really ran at.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

DEFAULT_ISSUER_NICE = -10


@contextlib.contextmanager
def issuer_priority(nice: int = DEFAULT_ISSUER_NICE) -> Iterator[int]:
    """Run the block at niceness `nice` where allowed; yields the niceness in effect."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        pass
    try:
        yield os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, before)
