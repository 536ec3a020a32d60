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

Niceness only weighs the issuer against the server: a woken issuer still waits for the
running task's slice when the server keeps every core busy. A real-time policy (SCHED_FIFO
at its lowest priority) runs it the moment it wakes instead; it then takes a core for as long
as it works, so it is only for an issuer that sleeps most of the time (the load stage's,
whose spin is bounded by the waker's budget), and the kernel's real-time throttling (95 % of
each second by default) bounds even a runaway one. Children never inherit it
(SCHED_RESET_ON_FORK).

Raising priority needs CAP_SYS_NICE (root, or an RLIMIT_NICE that allows it); without it
the issuer keeps what it has, and each point records the niceness it really ran at.
Lowering priority needs nothing: `lower_priority` is how the embedded Airflow's
components step aside.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ISSUER_NICE = -10
# SCHED_FIFO's lowest priority: above every normal task, below every real-time one.
DEFAULT_ISSUER_REALTIME = 1


@dataclass(frozen=True)
class IssuerPriority:
    """What the issuer really ran at."""
    nice: int                # its autogroup's niceness where autogroups are on, else its thread's
    realtime: int | None     # its SCHED_FIFO priority; None: the normal policy


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


def set_realtime(priority: int) -> bool:
    """Run the calling thread at SCHED_FIFO `priority` (children reset to normal); whether
    it took (EPERM without CAP_SYS_NICE, or in a cgroup with no real-time budget)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
                              os.sched_param(priority))
    except (OSError, AttributeError):
        return False
    return True


def _policy() -> tuple[int, int]:
    return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority


def _restore_policy(policy: int, priority: int) -> None:
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, policy, os.sched_param(priority))


@contextlib.contextmanager
def issuer_priority(nice: int = DEFAULT_ISSUER_NICE,
                    realtime: int | None = DEFAULT_ISSUER_REALTIME
                    ) -> Iterator[IssuerPriority]:
    """Run the block at niceness `nice` where allowed (the calling thread, and its
    autogroup where there is one), and at SCHED_FIFO `realtime` where allowed (None or 0:
    the normal policy); yields what it really ran at."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    group_before = autogroup_nice()
    policy_before = _policy()
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    if group_before is not None:
        set_autogroup_nice(nice)
    took = bool(realtime) and set_realtime(realtime)
    try:
        group = autogroup_nice()
        yield IssuerPriority(os.getpriority(os.PRIO_PROCESS, 0) if group is None else group,
                             realtime if took else None)
    finally:
        if took:
            _restore_policy(*policy_before)
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, before)
        if group_before is not None:
            set_autogroup_nice(group_before)
