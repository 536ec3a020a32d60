"""Where a stage runs: a child process on the worker, or a container of the stage image.

The stage operator picks a runner when its task executes and hands it one `StageCall`; the
runner owns what it starts (the process or the container): it streams the stage's output
into the task log, returns the stage's result (its `RESULT {json}` line), raises StageFailed
with the output's tail when the stage fails, and stops what it started on `kill`. Both run
the same `inferbench stage ...` command line (`inferbench.pipeline.stage_args`).

The docker SDK is imported only inside DockerRunner.run: parsing a DAG, or running the local
runtime, never loads it.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowException

from inferbench.containers import (
    GPUS_ENV,
    IMAGE_ENV,
    RUNTIME_ENV,
    RUNTIMES,
    ContainerSpec,
    Limits,
    image_from_env,
    proxy_dir,
)
from inferbench.pipeline import (
    DB_ENV,
    SPEC_ENV,
    STAGE_TRAITS,
    Stage,
    parse_result_line,
    stage_args,
)
from inferbench.user_files import DATA_DIRS_ENV, data_dirs

TAIL_LINES = 30  # output lines a failure carries
STOP_GRACE_S = 30  # a killed stage container's time to clean up before SIGKILL
# What a stage container needs from the worker's environment besides the spec.
PASSED_ENV = ("INFERBENCH_HOME", DB_ENV, GPUS_ENV, DATA_DIRS_ENV)
# The results database as a stage container reaches it, where that differs from the
# worker's own URL (a compose worker reaches it by service name, its host-networked stage
# containers through the host's port): passed to the container as DB_ENV.
STAGE_DB_ENV = "INFERBENCH_STAGE_DB_URL"


@dataclass(frozen=True)
class StageCall:
    """One stage invocation for one DAG run."""

    stage: Stage
    run_id: str
    spec: dict[str, Any]          # the DAG run's params: the benchmark spec
    platform: str | None = None
    config: int | None = None

    def args(self) -> list[str]:
        """The `inferbench` arguments (the stage image's entry point is `inferbench`)."""
        return stage_args(self.stage, self.run_id, self.platform, self.config)


class StageFailed(AirflowException):
    """A stage exited non-zero; carries the tail of its output."""

    def __init__(self, stage: str, returncode: int, tail: list[str], where: str = "") -> None:
        super().__init__(f"stage {str(stage)!r} exited with code {returncode}{where}; last "
                         "output:\n" + "\n".join(tail))
        self.stage = stage
        self.returncode = returncode
        self.tail = tail


class StageContainerFailed(StageFailed):
    """A stage container exited non-zero; carries the tail of its logs."""

    def __init__(self, stage: str, returncode: int, tail: list[str], image: str) -> None:
        super().__init__(stage, returncode, tail, where=f" in its container ({image})")
        self.image = image


class _Output:
    """Feeds a stage's output lines into the task log; keeps the result and the tail."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.result: Any = None
        self.tail: list[str] = []

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        is_result, result = parse_result_line(line)
        if is_result:
            self.result = result  # the last one wins, as the contract says
            return
        self.log.info("%s", line)
        self.tail = (self.tail + [line])[-TAIL_LINES:]


class StageRunner(ABC):
    """Runs stage calls somewhere; one runner per task execution."""

    @abstractmethod
    def run(self, call: StageCall, log: Any) -> Any:
        """Run the stage to its end; return its result, or raise StageFailed."""

    @abstractmethod
    def kill(self) -> None:
        """Stop what `run` started (called from another thread by the task's on_kill)."""


def _terminate_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: the stage gets SIGTERM when the task process that started it dies,
    even by SIGKILL (a lost worker), and then stops its server as on_kill would have it
    (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    def arm() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:  # the task died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class LocalRunner(StageRunner):
    """The stage as a child process of the worker, in its own process group."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None

    def argv(self, call: StageCall) -> list[str]:
        return [sys.executable, "-m", "inferbench", *call.args()]

    def run(self, call: StageCall, log: Any) -> Any:
        argv = self.argv(call)
        env = {**os.environ, SPEC_ENV: json.dumps(call.spec)}
        log.info("running %s", " ".join(argv))
        # A new session, so that on_kill reaches the servers and workers the stage started.
        self._process = process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, start_new_session=True, preexec_fn=_terminate_with_parent(os.getpid()))
        output = _Output(log)
        assert process.stdout is not None
        for line in process.stdout:
            output.feed(line)
        returncode = process.wait()
        if returncode != 0:
            raise StageFailed(call.stage, returncode, output.tail)
        return output.result

    def kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # it ended meanwhile


class DockerRunner(StageRunner):
    """The stage as a container of the stage image, on the worker's Docker daemon.

    Runs as `inferbench.containers.ContainerSpec` describes every InferBench container (host
    network, the home mounted at the same path, run/role labels, GPUs, the spec's memory
    limit). Stages that start or stop serving containers get a Docker socket: a filtering
    proxy's (inferbench.docker_proxy), run here for as long as the container, which lets
    them manage their own run's serving containers only; the others get none. The
    container is removed whatever the outcome, and stopped by `kill`; what a killed
    attempt left is removed before the next stage container starts
    (inferbench.leftover_containers).

    :param image: the stage image; None reads INFERBENCH_IMAGE when the stage runs.
    :param entrypoint: overrides the image's entry point (`inferbench`).
    """

    def __init__(self, image: str | None = None, entrypoint: list[str] | None = None) -> None:
        self.image = image
        self.entrypoint = entrypoint
        # No lock between run() and kill(): Airflow calls on_kill from a signal handler on
        # the thread that is inside run(). Each writes its own field before reading the
        # other's, so at least one of them sees the other and the container is stopped.
        self._container: Any = None
        self._killed = False
        # This runner's proxy socket, unique: a task's retry gets a runner of its own.
        self._proxy_name = secrets.token_hex(8)

    def command(self, call: StageCall) -> list[str]:
        return call.args()

    def container_spec(self, call: StageCall) -> ContainerSpec:
        from inferbench import paths
        from inferbench.leftover_containers import stage_container_name

        image = self.image or image_from_env()
        resources = call.spec.get("resources") or {}
        home = paths.home()
        socket = (proxy_dir(home) / f"{self._proxy_name}.sock"
                  if STAGE_TRAITS[call.stage].controls_servers else None)
        return ContainerSpec(
            image=image, command=self.command(call), run_id=call.run_id, role=str(call.stage),
            home=home, docker_socket=socket, entrypoint=self.entrypoint,
            name=stage_container_name(home, call.run_id, str(call.stage), call.platform,
                                      call.config),
            # where a trace or sweep file may be read from, as on the worker
            read_only_dirs=tuple(data_dirs()),
            limits=Limits(cpus=resources.get("cpus"), memory_gb=resources.get("memory_gb")),
            environment={
                **{k: os.environ[k] for k in PASSED_ENV if k in os.environ},
                **({DB_ENV: os.environ[STAGE_DB_ENV]} if STAGE_DB_ENV in os.environ else {}),
                SPEC_ENV: json.dumps(call.spec), RUNTIME_ENV: "docker", IMAGE_ENV: image,
                "INFERBENCH_HOME": str(paths.home()),
            },
        )

    def create_kwargs(self, spec: ContainerSpec) -> dict[str, Any]:
        """docker SDK `containers.create` arguments for a stage container."""
        kwargs = spec.create_kwargs()
        kwargs.pop("detach", None)  # `create` never attaches; `run` would
        if spec.limits.cpus:
            # `resources.cpus` is a hard limit for serving containers only; a stage
            # container gets it as a CPU share, as the spec documents.
            kwargs.pop("nano_cpus", None)
            kwargs["cpu_shares"] = round(spec.limits.cpus * 1024)
        return kwargs

    def run(self, call: StageCall, log: Any) -> Any:
        from inferbench import containers, leftover_containers

        client = containers.client()  # imports the docker SDK; names the extra if missing
        spec = self.container_spec(call)
        # Made before the container's arguments: ContainerSpec hides the proxies' directory
        # (a tmpfs over it) wherever it exists.
        proxy_dir(spec.home).mkdir(mode=0o700, parents=True, exist_ok=True)
        kwargs = self.create_kwargs(spec)
        assert spec.name is not None
        leftover_containers.remove_before_stage(client, name=spec.name, run_id=call.run_id,
                                                stage=str(call.stage), log=log)
        proxy = self._start_proxy(spec, log) if spec.docker_socket else None
        try:
            return self._run_container(client, call, spec, kwargs, log)
        finally:
            if proxy is not None:
                proxy.stop()
            if call.stage == Stage.STOP and call.platform is not None:
                leftover_containers.remove_servers(client, run_id=call.run_id,
                                                   platform=call.platform, config=call.config,
                                                   log=log)

    def _start_proxy(self, spec: ContainerSpec, log: Any) -> Any:
        """The Docker proxy of this stage container, serving until the container ends."""
        from inferbench import containers
        from inferbench.docker_policy import StagePolicy
        from inferbench.docker_proxy import DockerProxy, remove_stale_sockets

        assert spec.docker_socket is not None
        for stale in remove_stale_sockets(spec.docker_socket.parent):
            log.info("removed the socket of a Docker proxy that is gone: %s", stale)
        home = spec.home.resolve()
        # The data directories a serving container may mount, as ContainerSpec mounts them:
        # those inside the home come with it (and a stage could swap them for a symlink).
        outside = tuple(d.resolve() for d in spec.read_only_dirs
                        if d.resolve().is_dir() and not d.resolve().is_relative_to(home))
        policy = StagePolicy(run_id=spec.run_id, home=home, read_only_dirs=outside)
        return DockerProxy(spec.docker_socket, policy, upstream=containers.daemon_socket(),
                           log=lambda line: log.warning("%s", line)).start()

    def _run_container(self, client: Any, call: StageCall, spec: ContainerSpec,
                       kwargs: dict[str, Any], log: Any) -> Any:
        import docker.errors

        from inferbench import containers

        log.info("running stage %r in %s: %s", str(call.stage), spec.image,
                 " ".join(spec.command))
        try:
            container = client.containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            log.info("pulling %s", spec.image)
            client.images.pull(spec.image)
            container = client.containers.create(**kwargs)
        self._container = container
        try:
            if self._killed:
                raise AirflowException(f"stage {str(call.stage)!r} was killed before its "
                                       "container started")
            # Attached before the start, so that no line is lost; `logs=True` also replays
            # anything written before the attach.
            stream = container.attach(stdout=True, stderr=True, stream=True, logs=True)
            container.start()
            output = _Output(log)
            for line in _lines(stream):
                output.feed(line)
            try:
                status = container.wait().get("StatusCode", -1)
            except docker.errors.NotFound:
                status = -1  # kill() removed it
            if status != 0:
                raise StageContainerFailed(call.stage, status, output.tail, spec.image)
            return output.result
        finally:
            self._container = None
            try:
                containers.remove(container)
            except docker.errors.APIError as exc:  # e.g. kill() is removing it right now
                log.warning("could not remove stage container %s: %s", container.id, exc)

    def kill(self) -> None:
        self._killed = True
        container = self._container
        if container is None:
            return
        import docker.errors

        from inferbench import containers

        try:
            # SIGTERM, then SIGKILL after the grace: the stage stops its servers first (up
            # to 10 s each). run() sees its output end and fails.
            container.stop(timeout=STOP_GRACE_S)
        except docker.errors.APIError:
            pass  # gone already, or never started
        # Removed here too, not only by run()'s cleanup: the task process may be killed
        # outright soon after on_kill.
        try:
            containers.remove(container)
        except docker.errors.APIError:
            pass  # run()'s cleanup tries again


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Whole lines from a stream of byte chunks that split lines anywhere."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


# One runner per runtime (inferbench.containers.RUNTIMES).
RUNNERS: dict[str, type[StageRunner]] = {"local": LocalRunner, "docker": DockerRunner}


def runner_for(runtime: str, *, image: str | None = None) -> StageRunner:
    """The runner of a runtime; `image` is the stage image, for the docker runtime."""
    if runtime not in RUNNERS:
        raise ValueError(f"Invalid `runtime` value {runtime!r}, expected one of "
                         f"{', '.join(map(repr, RUNTIMES))}; fix: pick one, or unset it to "
                         f"read {RUNTIME_ENV} on the worker.")
    return DockerRunner(image=image) if runtime == "docker" else LocalRunner()
