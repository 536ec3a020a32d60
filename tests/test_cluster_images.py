"""The cluster's PostgreSQL and Redis images, built and started for real (docker tier): the
images docker-compose.yaml runs, from the official upstream images where they can be pulled
and from the local Debian base where they cannot."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time

import pytest
from conftest import ROOT

from inferbench.netutil import free_port

pytestmark = pytest.mark.docker

POSTGRES_IMAGE, REDIS_IMAGE = "inferbench/postgres:latest", "inferbench/redis:latest"
SUPERUSER_PASSWORD, RESULTS_PASSWORD, REDIS_PASSWORD = "sup3r-Secret", "r3sults_Own", "br0ker-Pw"


@pytest.fixture(scope="module")
def cluster_images(docker_client) -> None:
    built = subprocess.run(["bash", str(ROOT / "scripts" / "build-images.sh"),
                            "--only", "postgres,redis"], env=dict(os.environ),
                           capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stdout + built.stderr[-3000:]


def _wait_healthy(container, check, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"{container.name} exited: {container.logs()[-2000:]!r}")
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{container.name} not ready in {timeout_s} s: "
                         f"{container.logs()[-2000:]!r}")


@pytest.fixture
def run_container(docker_client):
    started = []

    def run(image: str, **kwargs):
        container = docker_client.containers.run(image, detach=True, **kwargs)
        started.append(container)
        return container

    yield run
    import docker

    for container in started:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass  # a test removed it (with its volume) itself


def _connect(port: int, user: str, password: str, dbname: str):
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=port, user=user, password=password,
                           dbname=dbname, connect_timeout=3)


def _accepts(port: int) -> bool:
    try:
        _connect(port, "airflow", SUPERUSER_PASSWORD, "airflow").close()
        return True
    except Exception:
        return False


def test_postgres_creates_the_results_role_once_and_keeps_its_data(cluster_images,
                                                                   run_container,
                                                                   docker_client):
    import psycopg

    port = free_port()
    volume = docker_client.volumes.create()
    env = {"POSTGRES_USER": "airflow", "POSTGRES_PASSWORD": SUPERUSER_PASSWORD,
           "POSTGRES_DB": "airflow", "RESULTS_DB_PASSWORD": RESULTS_PASSWORD}
    try:
        first = run_container(POSTGRES_IMAGE, environment=env,
                              ports={"5432/tcp": ("127.0.0.1", port)},
                              volumes={volume.name: {"bind": "/var/lib/postgresql/data"}})
        _wait_healthy(first, lambda: _accepts(port))
        # The results role reaches its own database with its own password, and writes to it.
        with _connect(port, "inferbench", RESULTS_PASSWORD, "inferbench") as conn:
            # UTF-8, as the official image's (SQL_ASCII text comes back as bytes).
            assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        # ...but not Airflow's, and not with the superuser's password.
        with pytest.raises(psycopg.OperationalError, match="permission denied|not permitted"):
            _connect(port, "inferbench", RESULTS_PASSWORD, "airflow")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _connect(port, "inferbench", SUPERUSER_PASSWORD, "inferbench")
        assert first.exec_run(["pg_isready", "-U", "airflow"]).exit_code == 0
        first.stop(timeout=30)
        # A second start on the same volume keeps the data and does not initialise again.
        second = run_container(POSTGRES_IMAGE, environment=env,
                               ports={"5432/tcp": ("127.0.0.1", port)},
                               volumes={volume.name: {"bind": "/var/lib/postgresql/data"}})
        _wait_healthy(second, lambda: _accepts(port))
        with _connect(port, "inferbench", RESULTS_PASSWORD, "inferbench") as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
        assert b"init-inferbench-db.sh" not in second.logs()
    finally:
        for container in docker_client.containers.list(all=True,
                                                       filters={"volume": volume.name}):
            container.remove(force=True)
        volume.remove(force=True)


def test_postgres_refuses_to_start_without_a_password(cluster_images, run_container):
    container = run_container(POSTGRES_IMAGE, environment={"POSTGRES_USER": "airflow"})
    assert container.wait(timeout=60)["StatusCode"] != 0
    assert b"POSTGRES_PASSWORD" in container.logs()


def _redis(port: int, *commands: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"".join(commands))
        time.sleep(0.2)
        return s.recv(4096)


def test_redis_answers_only_with_its_password(cluster_images, run_container):
    port = free_port()
    container = run_container(REDIS_IMAGE, environment={"REDIS_PASSWORD": REDIS_PASSWORD},
                              ports={"6379/tcp": ("127.0.0.1", port)})

    def answers() -> bool:
        try:
            return _redis(port, b"PING\r\n") != b""
        except OSError:
            return False

    _wait_healthy(container, answers)
    assert _redis(port, b"PING\r\n").startswith(b"-NOAUTH")
    assert _redis(port, b"AUTH wrong\r\n").startswith(b"-WRONGPASS")
    assert _redis(port, f"AUTH {REDIS_PASSWORD}\r\nPING\r\n".encode()) == b"+OK\r\n+PONG\r\n"
    # The compose file's health check, as compose runs it, and the password not in `ps`.
    check = container.exec_run(["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping'])
    assert check.exit_code == 0 and b"PONG" in check.output
    top = container.top()
    assert all(REDIS_PASSWORD not in " ".join(p) for p in top["Processes"])
    # The server runs as the redis user, not as root.
    uid = container.exec_run(["id", "-u", "redis"]).output.decode().strip()
    status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
    assert uid != "0" and f"Uid:\t{uid}\t" in status


def test_redis_refuses_to_start_without_a_password(cluster_images, run_container):
    container = run_container(REDIS_IMAGE)
    assert container.wait(timeout=60)["StatusCode"] != 0
    assert b"REDIS_PASSWORD" in container.logs()


def test_a_rebuild_removes_the_images_left_untagged_by_this_projects_builds_only(
        docker_client, cluster_images):
    import docker

    def build(label: str, value: str) -> str:
        dockerfile = f"FROM scratch\nLABEL {label}\nLABEL probe={value}\n"
        image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()),
                                              tag="inferbench/prune-probe:latest", rm=True)
        return image.id

    # Two builds under one tag: the first is left untagged, as a rebuild leaves what it
    # replaced; once with this project's label, once with another.
    ours = build("org.inferbench.image=probe", "1")
    build("org.inferbench.image=probe", "2")
    theirs = build("someone.else=probe", "3")
    build("someone.else=probe", "4")
    try:
        rebuilt = subprocess.run(["bash", str(ROOT / "scripts" / "build-images.sh"),
                                  "--only", "redis"], env=dict(os.environ),
                                 capture_output=True, text=True, timeout=1800)
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr[-3000:]
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(ours)
        assert docker_client.images.get(theirs).tags == []
        assert docker_client.images.get(REDIS_IMAGE).labels["org.inferbench.image"] == "redis"
    finally:
        for leftover in (theirs, "inferbench/prune-probe:latest"):
            try:
                docker_client.images.remove(leftover, force=True)
            except docker.errors.ImageNotFound:
                pass
