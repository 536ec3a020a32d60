"""Containers for the Docker runtime: one place that decides how any InferBench container runs.

Both kinds of container use these settings: the stage containers the Airflow task starts
(operators/stage.py) and the serving containers the serve stage starts (stages/serve.py).
- host networking: a server's port is reached at 127.0.0.1 by the load stage as in the
  local runtime, and the embedded PostgreSQL's socket directory is under the mounted home;
- the InferBench home (run directories, model artifacts) is bind-mounted at the same path as
  on the host, so a container started from inside a container mounts the same files;
- labels name the run and the role, so whatever a run started can be found and removed
  (and a stage container's name its stage: inferbench.leftover_containers);
- the Docker socket is never the daemon's own: a stage that starts serving containers gets
  a filtering proxy's (inferbench.docker_proxy), and the directory of those proxies' sockets
  (under the home) is hidden from every container;
- GPUs are requested when the worker has them; CPU and memory limits come from the spec.

The docker SDK is imported lazily: the local runtime never needs it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferbench.errors import InferBenchError

RUNTIME_ENV = "INFERBENCH_RUNTIME"        # local | docker, read where stages run
IMAGE_ENV = "INFERBENCH_IMAGE"            # the stage image, also used for serving containers
GPUS_ENV = "INFERBENCH_GPUS"              # "all", a count, or "none"; default: all if nvidia-smi
DEFAULT_IMAGE = "inferbench/stage:cpu"
LABEL_RUN = "org.inferbench.run"
LABEL_ROLE = "org.inferbench.role"
SERVER_ROLE_PREFIX = "server:"              # the role of a serving container
DOCKER_SOCKET = "/var/run/docker.sock"
PROXY_DIR_NAME = ".docker-proxy"            # under the home: the proxies' sockets
RUNTIMES = ("local", "docker")


def runtime_from_env() -> str:
    runtime = os.environ.get(RUNTIME_ENV, "local")
    if runtime not in RUNTIMES:
        raise InferBenchError(f"environment {RUNTIME_ENV}={runtime!r} is invalid; expected one "
                              f"of {', '.join(map(repr, RUNTIMES))}; fix: set it or unset it")
    return runtime


def image_from_env() -> str:
    return os.environ.get(IMAGE_ENV, DEFAULT_IMAGE)


def server_role(platform: str, config: int) -> str:
    """The role label of the container serving one configuration of a platform."""
    return f"{SERVER_ROLE_PREFIX}{platform}:{config}"


def proxy_dir(home: Path) -> Path:
    """Where the Docker proxies of stage containers listen: under the home, because the
    daemon mounts a socket from the host's view of it (the worker sees the same path)."""
    return home / PROXY_DIR_NAME


@dataclass(frozen=True)
class Limits:
    """Resource limits of one container; None means unlimited."""

    cpus: float | None = None
    memory_gb: float | None = None
    cpuset: str | None = None   # the CPUs it may run on ("1", "2-3"), as docker lists them


@dataclass
class ContainerSpec:
    """What to run and for whom; `create_kwargs` turns it into docker SDK arguments."""

    image: str
    command: list[str]
    run_id: str
    role: str                         # stage name, or server_role(platform, config)
    home: Path
    environment: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    # A Docker API socket on the host (a filtering proxy's), mounted at DOCKER_SOCKET: for
    # the stages that start sibling serving containers.
    docker_socket: Path | None = None
    entrypoint: list[str] | None = None
    name: str | None = None
    # Mounted read-only at the same paths (the data directories a spec's files come from),
    # except those already inside the home; a missing one is left out (the stage then says
    # the file is not there, naming it).
    read_only_dirs: tuple[Path, ...] = ()

    def create_kwargs(self) -> dict[str, Any]:
        from docker.types import DeviceRequest, Mount

        home = str(self.home.resolve())
        mounts = [Mount(target=home, source=home, type="bind")]
        for d in self.read_only_dirs:
            source = d.resolve()
            if source.is_dir() and not source.is_relative_to(home):
                mounts.append(Mount(target=str(source), source=str(source), type="bind",
                                    read_only=True))
        proxies = proxy_dir(Path(home))
        if proxies.is_dir():
            # Every container sees the home; none may reach a stage's proxy socket there.
            mounts.append(Mount(target=str(proxies), source=None, type="tmpfs"))
        if self.docker_socket:
            mounts.append(Mount(target=DOCKER_SOCKET, source=str(self.docker_socket),
                                type="bind"))
        kwargs: dict[str, Any] = {
            "image": self.image, "command": self.command, "environment": self.environment,
            "labels": {LABEL_RUN: self.run_id, LABEL_ROLE: self.role},
            "mounts": mounts, "network_mode": "host", "detach": True, "name": self.name,
            "working_dir": home,
        }
        if self.entrypoint is not None:
            kwargs["entrypoint"] = self.entrypoint
        gpus = gpu_count()
        if gpus:
            kwargs["device_requests"] = [DeviceRequest(count=gpus, capabilities=[["gpu"]])]
        if self.limits.cpus:
            kwargs["nano_cpus"] = int(self.limits.cpus * 1e9)
        if self.limits.cpuset:
            kwargs["cpuset_cpus"] = self.limits.cpuset
        if self.limits.memory_gb:
            kwargs["mem_limit"] = int(self.limits.memory_gb * 2**30)
        return kwargs


def gpu_count() -> int:
    """GPUs to request: INFERBENCH_GPUS ('all' = -1, a number, 'none'), else all GPUs when the
    worker has the NVIDIA driver's tools, else none."""
    value = os.environ.get(GPUS_ENV)
    if value is None:
        return -1 if shutil.which("nvidia-smi") else 0
    if value in ("all", "-1"):
        return -1
    if value in ("none", "0", ""):
        return 0
    try:
        return int(value)
    except ValueError:
        raise InferBenchError(f"environment {GPUS_ENV}={value!r} is invalid; expected 'all', "
                              "'none' or a number of GPUs") from None


def client():
    """A docker SDK client for the local daemon, with a clear error when there is none."""
    try:
        import docker
    except ImportError:
        raise InferBenchError("the docker runtime needs the docker SDK; fix: pip install "
                              "'inferbench[docker]'") from None
    try:
        c = docker.from_env()
        c.ping()
    except Exception as exc:  # docker raises several unrelated types for "no daemon"
        raise InferBenchError(f"no Docker daemon reachable ({exc}); fix: start dockerd "
                              "(scripts/start-docker.sh) or use the local runtime") from None
    return c


def daemon_socket() -> str:
    """The path of the daemon's unix socket, as the docker SDK finds it (DOCKER_HOST)."""
    host = os.environ.get("DOCKER_HOST", f"unix://{DOCKER_SOCKET}")
    if not host.startswith("unix://"):
        raise InferBenchError(f"DOCKER_HOST={host!r}: stage containers reach the daemon "
                              "through a filtering proxy of its unix socket; fix: run the "
                              "worker beside a daemon with a unix socket")
    return host.removeprefix("unix://")


def remove(container) -> None:
    """Stop and remove a container, whatever its state; gone already is fine."""
    import docker.errors

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass


def run_containers(docker_client, run_id: str) -> list:
    """Every container (running or not) that belongs to `run_id`."""
    # ignore_removed: one removed while it is listed (a teardown at work) is gone, not an error
    return docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"},
                                         ignore_removed=True)


def all_inferbench_containers(docker_client) -> list:
    return docker_client.containers.list(all=True, filters={"label": LABEL_RUN})
