"""The resource sampler is a forked process: it must not outlive a stage killed hard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

SCRIPT = """
import time
from inferbench.metrics.sampler import ResourceSampler
sampler = ResourceSampler(None, period_s=0.05).__enter__()
print(sampler._child.pid, flush=True)
time.sleep(120)
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_sampler_exits_when_its_stage_is_sigkilled():
    stage = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        sampler_pid = int(stage.stdout.readline())
        assert not gone(sampler_pid)
        os.kill(stage.pid, signal.SIGKILL)
        stage.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not gone(sampler_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(sampler_pid), "the sampler outlived its SIGKILLed stage"
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait()
