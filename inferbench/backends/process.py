"""The shared lifecycle of a locally started server: spawn, wait for readiness, stop.

The server runs in its own session (process group) so it outlives the Airflow task that
started it (the load task runs against it later) and so stopping it also stops every child
it forked (Triton's Python-backend stubs, uvicorn workers): nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from inferbench.backends.base import LaunchPlan
from inferbench.errors import InferBenchError
from inferbench.netutil import poll_http_ok

# Set in a server's environment: a stage killed between starting a server and recording
# its pid leaves the tag (recorded first) to find the server by.
SERVER_TAG_ENV = "INFERBENCH_SERVER_TAG"


def spawn(plan: LaunchPlan, log_path: Path, tag: str | None = None) -> subprocess.Popen:
    """Start the server in a session of its own (its group is what stop_group stops)."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
    env = {**os.environ, **plan.env, **({SERVER_TAG_ENV: tag} if tag else {})}
    process = subprocess.Popen(
        plan.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, cwd=plan.cwd, start_new_session=True,
    )
    _SPAWNED[process.pid] = process
    return process


# The servers this process started, by pid. Holding the Popen keeps its exit status: a
# dropped Popen is reaped by the next one subprocess starts, and the status with it.
_SPAWNED: dict[int, subprocess.Popen] = {}


def exit_description(pid: int) -> str | None:
    """None while the process group led by `pid` runs; else how it ended, as a phrase
    ("was killed by signal 9 (SIGKILL)", "exited with code 1"). Only a server this process
    started has a known exit status."""
    process = _SPAWNED.get(pid)
    if process is None:  # a server another process started (maybe not a group leader)
        if _process_alive(pid) or group_alive(pid):
            return None
        return "is gone (another process started it: its exit status is unknown here)"
    if process.poll() is None or group_alive(pid):
        return None
    code = process.returncode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"


def _process_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tagged_leaders(tag: str) -> list[int]:
    """The session leaders spawned with this tag (their children inherit the tag but lead
    nothing; stopping a leader's group stops them)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(SERVER_TAG_ENV) == tag and os.getsid(proc.pid) == proc.pid:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
    return found


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    """Poll `url` until it answers 200; fail early if the server process exits."""

    def still_running() -> None:
        if process.poll() is not None:
            raise InferBenchError(
                f"server exited with code {process.returncode} before it was ready; "
                f"last log lines:\n{tail(log_path)}")

    if poll_http_ok(url, timeout_s, check=still_running):
        return
    raise InferBenchError(f"server not ready at {url} after {timeout_s:.0f} s; last log lines:\n"
                          f"{tail(log_path)}")


def process_started_at(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None if it is gone."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def stop_group(pid: int, started_at: float | None = None, grace_s: float = 10.0) -> bool:
    """SIGTERM the process group led by `pid`, SIGKILL what is left after `grace_s`.
    Returns False if the group was already gone, or if `started_at` (the leader's start
    time when it was recorded) shows that `pid` now leads another process: pids are
    reused, and signalling the group of a stranger would kill it."""
    if started_at is not None:
        now_started = process_started_at(pid)
        # Start times come in clock ticks: the same process reads the same value, and a
        # reused pid started long after.
        if now_started is not None and abs(now_started - started_at) > 0.5:
            return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pid):
            _reap(pid)
            return True
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    # SIGKILL is delivered at once but a loaded host takes a moment to tear the processes
    # down: return only when the group is gone, so "stopped" means nothing is left.
    deadline = time.monotonic() + 5.0
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _reap(pid)
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts for killpg; treat a group of only zombies as gone.
    import psutil

    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (started by another task): init reaps it


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
