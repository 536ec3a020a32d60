"""Stopping a recorded server process: never a stranger that got its pid."""

from __future__ import annotations

import subprocess

from inferbench.backends.process import group_alive, process_started_at, stop_group


def test_a_recorded_pid_now_leading_another_process_is_left_alone():
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = process_started_at(process.pid)
        assert started is not None
        # As if the recorded server had started an hour before this process got its pid.
        assert stop_group(process.pid, started - 3600.0) is False
        assert process.poll() is None and group_alive(process.pid)
        # The recorded start time of this very process: stopped.
        assert stop_group(process.pid, started, grace_s=5.0) is True
        assert process.wait(timeout=5) is not None and not group_alive(process.pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
