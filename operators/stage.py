"""The stage operator: runs `inferbench stage <name> --run <id>` as one Airflow task.

The stage code itself knows nothing of Airflow; this operator only decides where the
command runs (the runtime), passes the spec, streams the stage's output into the task log
and pushes the stage's result (its last `RESULT {json}` line) to XCom. Both runtimes run the
same command line:
- local: a child process on the worker (the embedded single-machine default);
- docker: the stage image, run by the Docker provider's DockerOperator, which this operator
  extends: the container's output streams into the task log, a failure raises the provider's
  typed exception carrying the logs, and the container is removed in every outcome (success,
  failure, `on_kill`). The run directory is mounted at the same path as on the host.
The runtime is the operator's `runtime` argument, else the worker's INFERBENCH_RUNTIME
environment (the cluster sets it to docker), else local.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from inferbench.containers import (
    GPUS_ENV,
    IMAGE_ENV,
    RUNTIME_ENV,
    RUNTIMES,
    ContainerSpec,
    Limits,
    image_from_env,
    runtime_from_env,
)

STAGES = ("generate", "convert", "serve", "load", "collect", "stop", "analyze", "configs",
          "measure")
PLATFORM_STAGES = ("serve", "load", "collect", "stop", "configs", "measure")
CONFIG_STAGES = ("serve", "load", "collect", "stop", "measure")
# Stages that start or stop serving containers: only they get the Docker socket.
SERVER_STAGES = ("serve", "stop", "measure")
RESULT_PREFIX = "RESULT "
SPEC_ENV = "INFERBENCH_SPEC_JSON"  # same name as inferbench.stages.common.SPEC_ENV
# What a stage container needs from the worker's environment besides the spec.
PASSED_ENV = ("INFERBENCH_HOME", "INFERBENCH_DB_URL", GPUS_ENV)


class StageFailed(AirflowException):
    """A stage process exited non-zero; carries the tail of its output."""

    def __init__(self, stage: str, returncode: int, tail: list[str]) -> None:
        super().__init__(f"stage {stage!r} exited with code {returncode}; last output:\n"
                         + "\n".join(tail))
        self.returncode = returncode
        self.tail = tail


class StageOperator(DockerOperator):
    """Run one benchmark stage for the DAG run's spec (the DAG params).

    :param stage: one of generate, convert, serve, load, collect, stop, analyze.
    :param platform: the serving platform, for serve/load/collect/stop; the task is skipped
        when the run's spec does not list it.
    :param runtime: where the stage runs: 'local' (a child process on the worker) or
        'docker' (the stage image); None reads INFERBENCH_RUNTIME on the worker at run time.
    :param image: the stage image for the docker runtime; None reads INFERBENCH_IMAGE.
    :param config: server configuration index, for serve/load/measure (and collect/stop,
        which default to all); the DAG maps `measure` over the `configs` stage's output.
    :param config_label: the configuration's label, shown as the mapped task's name.
    """

    template_fields = (*DockerOperator.template_fields, "stage", "platform")
    ui_color = "#e8f4fd"

    def __init__(self, *, stage: str, platform: str | None = None, runtime: str | None = None,
                 image: str | None = None, config: int | None = None,
                 config_label: str | None = None, **kwargs: Any) -> None:
        # The container is removed whatever happens; host networking reaches the servers and
        # the embedded PostgreSQL as a local process would; no /tmp mount is needed.
        kwargs.setdefault("auto_remove", "force")
        kwargs.setdefault("mount_tmp_dir", False)
        kwargs.setdefault("network_mode", "host")
        kwargs.setdefault("xcom_all", True)
        super().__init__(image=image or "", **kwargs)
        if stage not in STAGES:
            raise ValueError(f"Invalid `stage` value {stage!r}, expected one of "
                             f"{', '.join(map(repr, STAGES))}.")
        if (stage in PLATFORM_STAGES) != (platform is not None):
            need = "needs" if stage in PLATFORM_STAGES else "takes no"
            raise ValueError(f"stage {stage!r} {need} `platform`")
        if runtime is not None and runtime not in RUNTIMES:
            raise ValueError(f"Invalid `runtime` value {runtime!r}, expected one of "
                             f"{', '.join(map(repr, RUNTIMES))}.")
        if config is not None and stage not in CONFIG_STAGES:
            raise ValueError(f"stage {stage!r} takes no `config`")
        self.stage, self.platform, self.runtime = stage, platform, runtime
        self.config, self.config_label = config, config_label
        self._process: subprocess.Popen | None = None

    def stage_argv(self, run_id: str) -> list[str]:
        argv = [sys.executable, "-m", "inferbench", "stage", self.stage, "--run", run_id]
        argv += ["--platform", self.platform] if self.platform else []
        return argv + (["--config", str(self.config)] if self.config is not None else [])

    def execute(self, context: Any) -> Any:
        params = context["params"]
        spec = params.dump() if hasattr(params, "dump") else dict(params)
        if self.platform and self.platform not in spec.get("platforms", []):
            raise AirflowSkipException(f"platform {self.platform!r} is not in this run's spec")
        runtime = self.runtime or runtime_from_env()
        if runtime == "docker":
            return self._run_docker(context, spec)
        env = {**os.environ, SPEC_ENV: json.dumps(spec)}
        return self._run_local(self.stage_argv(context["run_id"]), env)

    def _run_docker(self, context: Any, spec: dict[str, Any]) -> Any:
        from inferbench import paths

        run_id = context["run_id"]
        image = self.image or image_from_env()
        resources = spec.get("resources") or {}
        container = ContainerSpec(
            image=image, command=self.stage_argv(run_id)[3:], run_id=run_id, role=self.stage,
            home=paths.home(), docker_socket=self.stage in SERVER_STAGES,
            limits=Limits(cpus=resources.get("cpus"), memory_gb=resources.get("memory_gb")),
            environment={
                **{k: os.environ[k] for k in PASSED_ENV if k in os.environ},
                SPEC_ENV: json.dumps(spec), RUNTIME_ENV: "docker", IMAGE_ENV: image,
                "INFERBENCH_HOME": str(paths.home()),
            },
        )
        kwargs = container.create_kwargs()
        # Hand the container to DockerOperator's own machinery (create, attach, stream logs,
        # wait, remove); it reads these attributes.
        self.image, self.command = image, kwargs["command"]
        self.environment = kwargs["environment"]
        self.mounts = kwargs["mounts"]
        self.labels = kwargs["labels"]
        self.working_dir = kwargs["working_dir"]
        self.device_requests = kwargs.get("device_requests")
        self.mem_limit = kwargs.get("mem_limit")
        if container.limits.cpus:
            self.cpus = container.limits.cpus  # the provider applies it as CPU shares
        self.log.info("running stage %r in %s", self.stage, image)
        from airflow.providers.docker.exceptions import DockerContainerFailedException

        try:
            lines = super().execute(context) or []
        except DockerContainerFailedException as exc:
            # The provider streams the container's output at INFO, which a quiet log level
            # drops: the failure's own lines go into the task log at ERROR, whatever the level.
            tail = [str(line).rstrip() for line in (exc.logs or [])][-30:]
            self.log.error("stage %r failed in its container; last lines:\n%s", self.stage,
                           "\n".join(tail))
            raise
        return parse_result(lines if isinstance(lines, list) else [lines])

    def _run_local(self, argv: list[str], env: dict[str, str]) -> Any:
        self.log.info("running %s", " ".join(argv))
        self._process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, bufsize=1,
                                         start_new_session=True)
        result, tail = None, []
        assert self._process.stdout is not None
        for line in self._process.stdout:
            line = line.rstrip("\n")
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX):])
                continue
            self.log.info("%s", line)
            tail = (tail + [line])[-30:]
        returncode = self._process.wait()
        if returncode != 0:
            raise StageFailed(self.stage, returncode, tail)
        return result

    def on_kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
        super().on_kill()  # stops and force-removes the container, if one was started


def parse_result(lines: list[str]) -> Any:
    """The stage's result: its last `RESULT {json}` line, or None."""
    for line in reversed(lines):
        line = line.strip()
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return None
