"""The load generator's CPU priority while it measures.

On a small host the server under test shares the cores with the load generator. When the
server keeps every core busy, the kernel lets a woken issuer wait for a core, and its sends
go out late: the instrument then measures its own queueing. A real deployment has its
clients on other machines; here the issuer asks for a higher priority (a lower niceness)
for the duration of a point, so it gets a core soon after it wakes. It spends a few percent
of a core, so the server loses next to nothing.

Two levels, because Linux schedules *autogroups* first when sched_autogroup_enabled is on
(the default on desktop and many server kernels): every session (setsid) is one group,
and groups share the CPU by the group's own niceness (/proc/PID/autogroup); a thread's
niceness only ranks it within its group. The server runs in a session of its own, so the
issuer raises both its thread's niceness and its session's group's.

Raising priority needs CAP_SYS_NICE (root, or an RLIMIT_NICE that allows it); without it
the issuer keeps what it has, and each point records the niceness it really ran at.
Lowering priority needs nothing: `lower_priority` is how the embedded Airflow's
components step aside.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

DEFAULT_ISSUER_NICE = -10


def _autogroup(pid: int | str = "self") -> Path | None:
    path = Path(f"/proc/{pid}/autogroup")
    return path if path.exists() else None


def autogroup_nice(pid: int | str = "self") -> int | None:
    """The niceness of the process's autogroup; None where autogroups are off or absent."""
    path = _autogroup(pid)
    if path is None:
        return None
    try:
        # "/autogroup-42 nice 0"
        return int(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def set_autogroup_nice(nice: int, pid: int | str = "self") -> bool:
    """Set the niceness of the process's autogroup (its whole session); whether it took."""
    path = _autogroup(pid)
    if path is None:
        return False
    try:
        path.write_text(str(nice))
    except OSError:  # EPERM to raise priority without CAP_SYS_NICE; EINVAL when disabled
        return False
    return autogroup_nice(pid) == nice


def lower_priority(pid: int, nice: int) -> None:
    """Give a process started in a session of its own niceness `nice`, group included."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    set_autogroup_nice(nice, pid)


@contextlib.contextmanager
def issuer_priority(nice: int = DEFAULT_ISSUER_NICE) -> Iterator[int]:
    """Run the block at niceness `nice` where allowed (the calling thread, and its
    autogroup where there is one); yields the niceness that ranks the issuer against the
    server: its autogroup's where autogroups are on, else its thread's."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    group_before = autogroup_nice()
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    if group_before is not None:
        set_autogroup_nice(nice)
    try:
        group = autogroup_nice()
        yield os.getpriority(os.PRIO_PROCESS, 0) if group is None else group
    finally:
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, before)
        if group_before is not None:
            set_autogroup_nice(group_before)
