"""The embedded single-machine Airflow: scheduler, dag-processor, triggerer and api-server
with the LocalExecutor, on the embedded PostgreSQL, all state under <home>/airflow.

Each component is a detached background process (its own session, log file and pid in
pids.json), so `inferbench run` can return while the UI stays up; starting again reuses
running components. Tasks run through the api-server's execution API, so it must be up.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from inferbench.embedded.postgres import database_url, ensure_postgres
from inferbench.errors import InferBenchError
from inferbench.load.priority import lower_priority
from inferbench.netutil import poll_http_ok, port_is_free
from inferbench.platforms import DeviceKind
from inferbench.scheduling.policies import DEFAULT_AGING_RATE, DEFAULT_POLICY
from inferbench.scheduling.workers import MAX_ACTIVE_RUNS, SCHEDULER_LOOP_ENV, host_class

# The triggerer runs no InferBench task (no deferrable operator): it is started so that the
# UI's health check, which expects one, shows the embedded default healthy.
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
WORKERS_ENV = "INFERBENCH_WORKERS"  # how many worker pools (GPU workers) to create
REFRESH_ENV = "INFERBENCH_DAG_REFRESH_S"
NICE_ENV = "INFERBENCH_AIRFLOW_NICE"
SCHED_DEFAULTS = {"AIRFLOW__INFERBENCH__SCHED_POLICY": DEFAULT_POLICY.value,
                  "AIRFLOW__INFERBENCH__SCHED_AGING_RATE": str(DEFAULT_AGING_RATE)}
# Airflow imports airflow_local_settings from $AIRFLOW_HOME/config: the cluster policy that
# places and orders scheduled runs (operators/scheduling.py).
LOCAL_SETTINGS = """\
# Written by inferbench (embedded Airflow): the job scheduling cluster policy.
from operators.scheduling import task_instance_mutation_hook  # noqa: F401
"""


def _airflow_home(home: Path) -> Path:
    return home / "airflow"


def _secret(home: Path) -> str:
    """One JWT secret shared by all components: the scheduler signs task tokens that the
    api-server checks, so they must agree; kept on disk so restarts agree too."""
    path = _airflow_home(home) / "jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written owner-only (never readable by others, even for a moment) under a private
        # name, then linked into place: two components starting at once never read a
        # half-written secret, and the second keeps the first one's.
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _whole_env(name: str, default: int, low: int, high: int, what: str) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InferBenchError(f"{name}={raw!r} is not a whole number from {low} to {high}; "
                              f"fix: {what} (default {default})")
    return value


def dag_refresh_s() -> int:
    return _whole_env(REFRESH_ENV, 300, 1, 86_400, "seconds between two parses of the DAG "
                      "files")


def component_nice(name: str) -> int:
    """The CPU niceness a component starts with. Only the components that run no task:
    the scheduler's children are the stage processes (the servers, the load generator),
    which must not inherit a lower priority."""
    if name == "scheduler":
        return 0
    return _whole_env(NICE_ENV, 10, 0, 19, "the niceness of Airflow's dag-processor, "
                      "triggerer and api-server, 0 to 19")


def airflow_env(home: Path, dags_folder: Path, port: int,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    base = f"http://127.0.0.1:{port}"
    refresh_s = str(dag_refresh_s())
    env = {
        "AIRFLOW_HOME": str(_airflow_home(home)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(home, "airflow", "psycopg2"),
        # Airflow would derive asyncpg for its async engine; psycopg 3 does async as well.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": database_url(home, "airflow", "psycopg"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PARALLELISM": "4",  # 2 cores: a few stage processes at most
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # local UI without login
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home),
        # The embedded default shares its cores with the servers and the load generator:
        # re-parsing the DAG files keeps a core busy for a while, and every 10 s (what a
        # DAG author would like) it made the load generator's sends late (see
        # benchmarks/loadgen/README.md, section 5). They are parsed at start, and
        # again every INFERBENCH_DAG_REFRESH_S (default 300 s; `inferbench up` after
        # `down` picks an edit up at once).
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": refresh_s,
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": refresh_s,
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        # INFO: task logs carry the stages' own lines (the analyze task's `report: PATH`);
        # at WARNING a successful task's log is empty.
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Job scheduling: runs wait side by side in their worker pools (MAX_ACTIVE_RUNS says
        # why); every waiting run must be examined each loop for priorities to decide who
        # goes next.
        "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": str(MAX_ACTIVE_RUNS),
        **SCHEDULER_LOOP_ENV,
    }
    # The scheduling policy's settings: the caller's environment wins over the defaults.
    for key, default in SCHED_DEFAULTS.items():
        env[key] = os.environ.get(key, default)
    return {**env, **(extra or {})}


def worker_count() -> int:
    return _whole_env(WORKERS_ENV, 1, 1, 1024, "set the number of GPU workers, e.g. 3")


def _write_local_settings(home: Path) -> None:
    config = _airflow_home(home) / "config"
    config.mkdir(parents=True, exist_ok=True)
    path = config / "airflow_local_settings.py"
    if not path.exists() or path.read_text() != LOCAL_SETTINGS:
        path.write_text(LOCAL_SETTINGS)


def ensure_worker_pools(base_url: str, n: int, hardware: DeviceKind) -> list[str]:
    """Pools <hardware>-worker-0..n-1 with one slot each (a worker runs one job at a time)
    and the hold pool of runs waiting for their worker; other worker pools, left from an
    earlier start (more workers, another class, or the class-less `worker-N` names of older
    versions), are deleted so no job is placed there."""
    from inferbench.airflow_api import AirflowClient
    from inferbench.scheduling.workers import (
        HOLD_POOL,
        HOLD_POOL_DESCRIPTION,
        parse_worker_pool,
        worker_names,
    )

    client = AirflowClient(base_url)
    wanted = worker_names(n, hardware)
    existing = client.pools()
    client.set_pool(HOLD_POOL, 0, HOLD_POOL_DESCRIPTION, create=HOLD_POOL not in existing)
    for name in wanted:
        client.set_pool(name, 1, f"{hardware.value.upper()} worker {name}: one benchmark job "
                        "at a time", create=name not in existing)
    for name in existing:
        stale = parse_worker_pool(name) or re.fullmatch(r"worker-\d+", name)
        if stale and name not in wanted:
            client.delete_pool(name)
    return wanted


def _pids_file(home: Path) -> Path:
    return _airflow_home(home) / "pids.json"


def _read_pids(home: Path) -> dict[str, int]:
    try:
        return json.loads(_pids_file(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _alive(pid: int) -> bool:
    """Our component: a live group leader running airflow. (Airflow rewrites its process
    title, e.g. "airflow api_server -- host:...", so the component name cannot be matched.)"""
    try:
        proc = psutil.Process(pid)
        return (proc.status() != psutil.STATUS_ZOMBIE and os.getpgid(pid) == pid
                and "airflow" in " ".join(proc.cmdline()))
    except (psutil.Error, ProcessLookupError):
        return False




def airflow_status(home: Path) -> dict[str, dict]:
    return {name: {"pid": pid, "running": _alive(pid)}
            for name, pid in _read_pids(home).items()}


def _airflow_cli() -> list[str]:
    return [sys.executable, "-m", "airflow"]


def _migrate(env: dict[str, str], home: Path) -> None:
    """`airflow db migrate` once per Airflow version (it takes ~20 s even when up to date)."""
    from importlib.metadata import version

    stamp = _airflow_home(home) / "migrated"
    wanted = version("apache-airflow")
    if stamp.exists() and stamp.read_text() == wanted:
        return
    proc = subprocess.run([*_airflow_cli(), "db", "migrate"], env={**os.environ, **env},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise InferBenchError(f"`airflow db migrate` failed:\n{proc.stderr[-3000:]}")
    stamp.write_text(wanted)


def start_airflow(home: Path, dags_folder: Path, port: int = 8080,
                  extra_env: dict[str, str] | None = None, wait_for_dag: str | None = None,
                  timeout_s: float = 300) -> str:
    """Start (or reuse) the components; returns the api-server's base URL."""
    ensure_postgres(home)
    env = airflow_env(home, dags_folder, port, extra_env)
    logs = _airflow_home(home) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _migrate(env, home)
    _write_local_settings(home)
    n_workers, hardware = worker_count(), host_class()
    pids = {k: v for k, v in _read_pids(home).items() if _alive(v)}
    for name in COMPONENTS:
        if name in pids:
            continue
        if name == "api-server" and not port_is_free(port):
            raise InferBenchError(f"port {port} is taken by another process; stop it or pass "
                                  "--port with a free port")
        log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen([*_airflow_cli(), name], env={**os.environ, **env},
                                stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        # Its own session is its own scheduling group: the group's niceness is what ranks
        # it against the benchmark's processes (see inferbench/load/priority.py).
        if nice := component_nice(name):
            lower_priority(proc.pid, nice)
        pids[name] = proc.pid
    _pids_file(home).write_text(json.dumps(pids))
    base = f"http://127.0.0.1:{port}"
    health = f"{base}/api/v2/monitor/health"
    if not poll_http_ok(health, timeout_s, interval_s=0.5):
        raise InferBenchError(f"the Airflow api-server did not answer at {health} within "
                              f"{timeout_s:.0f} s; see {logs / 'api-server.log'}")
    ensure_worker_pools(base, n_workers, hardware)
    if wait_for_dag:
        from inferbench.airflow_api import AirflowClient

        AirflowClient(base).wait_for_dag(wait_for_dag, timeout_s,
                                         hint=f"see {logs / 'dag-processor.log'}")
    return base


def _signal_groups(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        if _alive(pid):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass


def stop_airflow(home: Path, grace_s: float = 20) -> None:
    """SIGTERM every component's group; SIGKILL what is still there after `grace_s`."""
    pids = list(_read_pids(home).values())
    _signal_groups(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    _signal_groups(pids, signal.SIGKILL)
    _pids_file(home).unlink(missing_ok=True)
