"""An embedded, real PostgreSQL 16 (the `pgserver` wheel): no system service needed.

The server keeps running after the process that started it exits (the Airflow
components and stage processes all use it) until `stop_postgres`. pgserver listens on
a unix socket only, and picks a short socket directory when the data path is too long.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path

from inferbench.errors import InferBenchError

DATABASES = ("airflow", "inferbench")


def _server(home: Path, start: bool = True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver
        from pgserver.postgres_server import PostmasterInfo

        logging.getLogger("pgserver").setLevel(logging.WARNING)
        server = pgserver.get_server(home / "pg", cleanup_mode=None)
    # get_server keeps one handle per data directory for the life of this process: a
    # server stopped since (stop_postgres, another process, a crash) is started again.
    running = PostmasterInfo.read_from_pgdata(server.pgdata)
    if start and (running is None or not running.is_running()):
        with server._lock:  # pgserver's own lock against two processes starting it
            server.ensure_postgres_running()
    return server


def ensure_postgres(home: Path) -> None:
    """Start (or reuse) the server under home/pg and create the project's databases."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        server = _server(home)
    except Exception as exc:
        raise InferBenchError(f"the embedded PostgreSQL did not start: {exc}; see "
                              f"{home / 'pg' / 'log'}") from exc
    existing = server.psql("SELECT datname FROM pg_database;")
    for name in DATABASES:
        if name not in existing.split():
            server.psql(f"CREATE DATABASE {name};")


def database_url(home: Path, database: str, driver: str = "psycopg") -> str:
    """SQLAlchemy URL of one database of the embedded server (unix socket)."""
    uri = _server(home).get_uri(database)  # postgresql://postgres:@/db?host=/socket/dir
    return uri.replace("postgresql://", f"postgresql+{driver}://", 1)


def stop_postgres(home: Path, mode: str = "fast") -> None:
    """Stop the server: "fast" (sessions rolled back, a clean shutdown) or "immediate" (as
    after a crash: no shutdown checkpoint, recovery at the next start)."""
    pgdata = home / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return
    server = _server(home, start=False)  # imports pgserver, its warning silenced
    from pgserver.postgres_server import pg_ctl

    try:
        pg_ctl(["-w", "-m", mode, "stop"], pgdata=pgdata, user=server.system_user)
    except subprocess.CalledProcessError:
        pass  # already stopped
