"""The cluster's database secrets: the results role (`inferbench`) has a password of its own,
which is all that stage containers carry; the superuser's never leaves the Airflow side.

The compose file is read as YAML (no docker-compose needed); the postgres init script runs
for real against a throw-away PostgreSQL (pgserver), as the postgres image runs it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import subprocess
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

INIT_SCRIPT = ROOT / "images" / "postgres" / "init-inferbench-db.sh"
RESULTS_URL_KEYS = ("INFERBENCH_DB_URL", "RESULTS_DB_URL", "INFERBENCH_STAGE_DB_URL")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def _environments(compose: dict) -> dict[str, dict[str, str]]:
    """Each service's environment, the shared block merged in (YAML merge keys)."""
    return {name: service.get("environment") or {}
            for name, service in compose["services"].items()}


def test_every_results_database_url_uses_the_results_roles_own_password():
    environments = _environments(_compose())
    urls = {f"{service}.{key}": env[key] for service, env in environments.items()
            for key in RESULTS_URL_KEYS if key in env}
    assert len(urls) >= 5  # the shared block's, the init's, the api-server's, ...
    for where, url in urls.items():
        assert "//inferbench:${RESULTS_DB_PASSWORD" in url, where
        assert "POSTGRES_PASSWORD}" not in url.replace(
            "(the results role's own, not POSTGRES_PASSWORD)}", ""), where
    assert "${RESULTS_DB_PASSWORD:?" in environments["postgres"]["RESULTS_DB_PASSWORD"]


def test_what_the_worker_passes_to_stage_containers_holds_no_superuser_password():
    from operators.runners import PASSED_ENV, STAGE_DB_ENV

    worker = _environments(_compose())["gpu-worker-0"]
    passed = {key: worker[key] for key in (*PASSED_ENV, STAGE_DB_ENV) if key in worker}
    # The stage containers (host network) reach the database through the host's port,
    # the worker itself by the service's name.
    assert "@${INFERBENCH_DB_HOST:-127.0.0.1}:${INFERBENCH_DB_PORT:-5432}/" in worker[STAGE_DB_ENV]
    assert "@postgres:5432/" in worker["INFERBENCH_DB_URL"]
    assert "INFERBENCH_DB_URL" in passed
    for key, value in passed.items():
        assert "${POSTGRES_PASSWORD" not in str(value), key


def _run_init(env: dict[str, str], bin_dir: Path | None = None) -> subprocess.CompletedProcess:
    path = f"{bin_dir}:{os.environ['PATH']}" if bin_dir else os.environ["PATH"]
    return subprocess.run(["bash", str(INIT_SCRIPT)], env={"PATH": path, **env},
                          capture_output=True, text=True, timeout=60)


def test_the_init_script_refuses_the_superusers_password_for_the_results_role():
    done = _run_init({"POSTGRES_USER": "airflow", "POSTGRES_DB": "airflow",
                      "POSTGRES_PASSWORD": "same", "RESULTS_DB_PASSWORD": "same"})
    assert done.returncode == 1 and "give the results role its own" in done.stderr


@pytest.fixture
def fresh_postgres(tmp_path):
    """A PostgreSQL of its own, as the postgres image's first start has it: the superuser
    and Airflow's database, nothing else."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver
        from pgserver.postgres_server import POSTGRES_BIN_PATH
    # quiet, as inferbench.embedded.postgres has it (it also logs at exit, after pytest)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    server = pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
    server.psql("CREATE DATABASE airflow;")
    try:
        yield server, Path(POSTGRES_BIN_PATH)
    finally:
        server.cleanup()


def _psql(server, bin_dir: Path, sql: str) -> str:
    return subprocess.run([str(bin_dir / "psql"), server.get_uri("airflow"), "-tAc", sql],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def _scram_verifies(verifier: str, password: str) -> bool:
    """Whether PostgreSQL's stored SCRAM-SHA-256 verifier is that of `password` (RFC 5802:
    StoredKey = H(HMAC(SaltedPassword, "Client Key")))."""
    method, iterations_salt, keys = verifier.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt),
                                 int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return method == "SCRAM-SHA-256" and (
        base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key)


def test_the_init_script_creates_the_results_role_with_its_own_password(fresh_postgres):
    server, bin_dir = fresh_postgres
    superuser, host = server.postgres_user, server.get_postmaster_info().socket_dir
    password = "it's a \"results\" pass; DROP ROLE x"  # quoted by psql, not pasted into SQL
    done = _run_init({"POSTGRES_USER": superuser, "POSTGRES_DB": "airflow",
                      "POSTGRES_PASSWORD": "the-superusers", "RESULTS_DB_PASSWORD": password,
                      "PGHOST": str(host)}, bin_dir)
    assert done.returncode == 0, done.stderr
    verifier = _psql(server, bin_dir, "SELECT rolpassword FROM pg_authid "
                                      "WHERE rolname = 'inferbench'")
    assert _scram_verifies(verifier, password)
    assert not _scram_verifies(verifier, "the-superusers")
    assert _psql(server, bin_dir, "SELECT datdba::regrole FROM pg_database "
                                  "WHERE datname = 'inferbench'") == "inferbench"
    # the results role cannot even connect to Airflow's metadata database
    assert _psql(server, bin_dir,
                 "SELECT has_database_privilege('inferbench', 'airflow', 'CONNECT')") == "f"


def test_the_clusters_scheduler_examines_as_many_waiting_runs_as_the_embedded_one():
    from inferbench.scheduling.workers import SCHEDULER_LOOP_ENV

    scheduler = _environments(_compose())["scheduler"]
    assert {key: scheduler.get(key) for key in SCHEDULER_LOOP_ENV} == SCHEDULER_LOOP_ENV
