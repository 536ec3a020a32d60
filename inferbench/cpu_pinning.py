"""Keeping the server and the load generator on CPUs of their own.

Where client and server share a host's cores, the load generator's work runs on the
server's cores whenever the kernel puts it there: an open-loop client slowed a one-instance
server on 2 vCPUs by about 30 % (the profile's open-loop factor), by an amount that moves
between runs. With `resources.server_cpus` the serving processes run on the listed CPUs
only (the local runtime starts them under `taskset`; the docker runtime gives the serving
container a cpuset) and the load stage, with every process it starts, on the CPUs this
worker may use that are left over.

CPU lists are written as Linux writes them (`taskset --cpu-list`, `docker --cpuset-cpus`,
/sys/devices/system/cpu/online): "1", "2-5", "0,2-3".
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator

from inferbench.errors import InferBenchError

FIELD = "resources.server_cpus"
_ITEM = re.compile(r"(\d+)(?:-(\d+))?")
# Far above any host: a typo ("1000000") is named instead of being expanded.
MAX_CPU = 4095


def parse_cpu_list(text: str) -> frozenset[int]:
    """The CPUs a list names ("0,2-3" -> {0, 2, 3}); ValueError that says the fix."""
    cpus: set[int] = set()
    for item in text.replace(" ", "").split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"{text!r} is not a CPU list; fix: CPU numbers and ranges "
                             "separated by commas, e.g. \"1\" or \"2-3\" or \"0,2-3\"")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        if last < first or last > MAX_CPU:
            raise ValueError(f"{item!r} in {text!r} is not a range of CPUs; fix: write it "
                             f"low-high, each 0..{MAX_CPU}, e.g. \"2-3\"")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: Iterable[int]) -> str:
    """The shortest list naming `cpus` ({0, 2, 3} -> "0,2-3")."""
    out: list[str] = []
    ordered = sorted(set(cpus))
    start = prev = None
    for cpu in [*ordered, None]:
        if cpu is not None and prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = cpu
    return ",".join(out)


def usable_cpus() -> frozenset[int]:
    """The CPUs this process may run on (a container's cpuset, a taskset around it)."""
    return frozenset(os.sched_getaffinity(0))


def check_usable(field: str, listed: str) -> frozenset[int]:
    """The CPUs `listed` names, each one this process may use; else an error naming the
    field (or option), the value and the CPUs there are."""
    try:
        cpus = parse_cpu_list(listed)
    except ValueError as exc:
        raise InferBenchError(f"{field}: {exc}") from None
    usable = usable_cpus()
    missing = cpus - usable
    if missing:
        raise InferBenchError(
            f"{field} {listed!r} names CPU {format_cpu_list(missing)}, which this "
            f"worker cannot use (it may use {format_cpu_list(usable)}); fix: list CPUs "
            f"from {format_cpu_list(usable)}")
    return cpus


def split(server_cpus: str) -> tuple[frozenset[int], frozenset[int]]:
    """(the server's CPUs, the load generator's CPUs) on this worker: the listed ones, and
    the usable ones that are left. Raises an error naming the field where the list names a
    CPU this worker cannot use, or leaves none for the load generator."""
    server = check_usable(FIELD, server_cpus)
    usable = usable_cpus()
    left = usable - server
    if not left:
        raise InferBenchError(
            f"{FIELD} {server_cpus!r} takes every CPU this worker may use "
            f"({format_cpu_list(usable)}), so the load generator would have none; fix: "
            f"leave at least one out, e.g. {format_cpu_list(sorted(usable)[1:])!r}")
    return server, left


def taskset_argv(cpus: Iterable[int], argv: list[str]) -> list[str]:
    """`argv` started on `cpus` only: taskset sets the affinity and execs it, so the pid
    is the server's and every thread and child it makes inherits the CPUs."""
    return ["taskset", "--cpu-list", format_cpu_list(cpus), *argv]


@contextlib.contextmanager
def pinned(cpus: Iterable[int] | None) -> Iterator[None]:
    """Run the calling thread on `cpus` (None: unchanged) until the block ends. Threads and
    processes it starts inside the block (the load generator's workers, the emulated
    link) inherit the CPUs; threads that already ran keep theirs."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
