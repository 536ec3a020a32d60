"""The issuer's priority: what it asks for, what it gets, and that it gives it back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from inferbench.load.priority import (
    autogroup_nice,
    issuer_priority,
    lower_priority,
    set_autogroup_nice,
)

PRIVILEGED = os.geteuid() == 0


@pytest.mark.skipif(not PRIVILEGED, reason="raising priority needs CAP_SYS_NICE (root here)")
def test_the_issuer_gets_its_priority_and_gives_it_back():
    thread, group = os.getpriority(os.PRIO_PROCESS, 0), autogroup_nice()
    with issuer_priority(-7, realtime=None) as got:
        assert got.nice == -7 and os.getpriority(os.PRIO_PROCESS, 0) == -7
        assert autogroup_nice() in (None, -7) and got.realtime is None
    assert os.getpriority(os.PRIO_PROCESS, 0) == thread and autogroup_nice() == group


@pytest.mark.skipif(not PRIVILEGED, reason="a real-time policy needs CAP_SYS_NICE (root here)")
def test_a_realtime_issuer_gets_it_on_its_thread_only_and_gives_it_back():
    with issuer_priority(-7, realtime=1) as got:
        assert got.realtime == 1
        assert os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
        # what it starts runs at the normal policy
        child = subprocess.run([sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
                               capture_output=True, text=True, check=True)
        assert int(child.stdout) == os.SCHED_OTHER
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_without_the_privilege_it_keeps_what_it_has_and_says_so():
    code = ("import os\n"
            "from inferbench.load.priority import issuer_priority\n"
            "os.setuid(65534) if os.geteuid() == 0 else None  # nobody: no CAP_SYS_NICE\n"
            "with issuer_priority(-10, realtime=1) as got: print(got.nice, got.realtime)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, start_new_session=True)
    nice, realtime = out.stdout.split()
    assert int(nice) >= 0 and realtime == "None"


def test_a_component_in_its_own_session_steps_aside():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                            start_new_session=True)
    try:
        lower_priority(proc.pid, 10)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == 10
        assert autogroup_nice(proc.pid) in (None, 10)
    finally:
        proc.kill()
        proc.wait()
    assert set_autogroup_nice(0, pid=2**22 + 1) is False  # no such process: nothing done
