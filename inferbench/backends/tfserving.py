"""TensorFlow Serving: the real `tensorflow_model_server` from its official Docker image.

TF Serving has no binary outside that image (no wheel, no Debian package that runs here),
so this platform is a `docker run` of the image (INFERBENCH_TFSERVING_IMAGE, default
DEFAULT_IMAGE) and works only where the image is present: tests/test_tfserving.py skips its
live test otherwise. Nothing else ever stands in for it.

Layout and settings (TF Serving's own names):
- model base path `<workdir>/models/<name>/1/` holding the SavedModel (saved_model.pb,
  variables/), mounted read-only at /models; TF Serving serves numbered version dirs;
- `models.config`: a text ModelServerConfig (model_config_list) naming the model, its
  base path in the container and the version, read with --model_config_file;
- with dynamic batching, `batching_parameters.txt`: a text BatchingParameters for
  --enable_batching --batching_parameters_file. max_batch_size is ServeContext.max_batch_size,
  batch_timeout_micros the queue delay, num_batch_threads the instance count (the batches
  run in parallel: TF Serving's counterpart of model instances), allowed_batch_sizes the
  preferred sizes plus max_batch_size (TF Serving requires the list to end with it). Unlike
  Triton's preferred sizes, TF Serving pads a batch up to the next allowed size;
- threads: --tensorflow_intra_op_parallelism is ServeContext.threads per instance, and
  --tensorflow_inter_op_parallelism the instance count.

Readiness: GET /v1/models/<name> (model status). TF Serving opens its gRPC and REST ports
only after the models of the initial config are loaded (ServerCore waits for them), and
an initial load that fails ends the server, so the first HTTP 200 there comes with the
version AVAILABLE. Before that, Docker's port proxy accepts the connection and drops it,
which the poll counts as not ready. (Read from TF Serving's server set-up; not observed
here, where the image cannot be pulled.)

Stopping: the serve stage SIGTERMs the process group of `docker run`. The attached CLI
forwards the signal to the container (--sig-proxy, on by default); --init makes tini the
container's PID 1, which passes it on to tensorflow_model_server (as PID 1 itself it would
ignore SIGTERM, having no handler); the server exits, and --rm removes the container. If
the CLI is SIGKILLed before that (stop_group's grace ran out), the container would survive
it, so `docker run` is not the group leader: a small supervisor (`python -m
inferbench.backends.tfserving`, below) runs it and, on SIGTERM, also removes the container
by its name. The container carries the run's labels too.

Server-side statistics: TF Serving exports Prometheus metrics only with a
--monitoring_config_file, and none of them splits queue time from compute time per model
the way ServerStats needs; server_stats() returns None (client-side latency only).

Docker runtime: this backend already runs its own container; the serve stage's docker
runtime would run `docker run` inside the stage image, without a Docker daemon, so it is
refused with the fix (use the local runtime, which starts the container on the host).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from inferbench import containers
from inferbench.backends.base import Backend, LaunchPlan, ServeContext, ServerStats
from inferbench.cpu_pinning import format_cpu_list
from inferbench.errors import InferBenchError
from inferbench.platforms import DeviceKind, ModelFormat, PlatformDescriptor, Transport

IMAGE_ENV = "INFERBENCH_TFSERVING_IMAGE"
# The release matching tensorflow-cpu 2.21 (the exporter) and tensorflow-serving-api 2.21.0.
DEFAULT_IMAGE = "tensorflow/serving:2.21.0"
VERSION = 1  # the model's version directory
CONTAINER_MODELS = "/models"
CONTAINER_GRPC_PORT = 8500  # the image's conventional ports (inside the container)
CONTAINER_REST_PORT = 8501
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def image() -> str:
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def container_name(ctx: ServeContext) -> str:
    """Unique among live servers on this host: the HTTP port is."""
    return f"inferbench-tfserving-{ctx.http_port}"


def _pbtxt_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_config(ctx: ServeContext) -> str:
    """models.config: one model, one pinned version."""
    return f"""\
model_config_list {{
  config {{
    name: {_pbtxt_string(ctx.model_name)}
    base_path: {_pbtxt_string(f"{CONTAINER_MODELS}/{ctx.model_name}")}
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: {VERSION} }} }}
  }}
}}
"""


def batching_parameters(ctx: ServeContext) -> str:
    """batching_parameters.txt from ctx.server (dynamic batching on)."""
    server = ctx.server
    allowed = sorted(b for b in server.preferred_batch_sizes if b < ctx.max_batch_size)
    lines = [f"max_batch_size {{ value: {ctx.max_batch_size} }}",
             f"batch_timeout_micros {{ value: {server.max_queue_delay_us} }}",
             f"num_batch_threads {{ value: {server.instance_count} }}"]
    if server.preferred_batch_sizes:
        lines += [f"allowed_batch_sizes: {b}" for b in [*allowed, ctx.max_batch_size]]
    return "\n".join(lines) + "\n"


class TfServingBackend(Backend):
    name = "tfserving"
    descriptor = PlatformDescriptor(
        model_format=ModelFormat.SAVEDMODEL,
        # Its REST predict API and its gRPC PredictionService (neither is KServe V2).
        protocols={Transport.HTTP: "tfserving-rest", Transport.GRPC: "tfserving-grpc"},
        # A guess, not measured (the image cannot run here): container start + SavedModel load.
        startup_s=6.0,
        # No GPU: the default image is the CPU build and `docker run` requests no GPU.
        devices={DeviceKind.CPU: f"only from its Docker image ({IMAGE_ENV}, default "
                 f"{DEFAULT_IMAGE}), started by the local runtime; no binary exists outside it"},
    )

    @staticmethod
    def model_root(ctx: ServeContext) -> Path:
        return ctx.workdir / "models"

    def prepare(self, ctx: ServeContext) -> None:
        if not _NAME.fullmatch(ctx.model_name):
            raise InferBenchError(f"model name {ctx.model_name!r}: TF Serving's REST paths "
                                  "take letters, digits and _ . - only; fix: rename it")
        source = ctx.model_path.resolve()
        if not (source / "saved_model.pb").is_file():
            raise InferBenchError(f"SavedModel {source} (saved_model.pb) does not exist; the "
                                  "convert stage must export the savedmodel format first")
        root = self.model_root(ctx)
        if root.exists():  # a stale version dir would be served (and timed) too
            shutil.rmtree(root)
        # A copy, not a link: the mount holds only this directory, a symlink out of it would
        # dangle inside the container.
        shutil.copytree(source, root / ctx.model_name / str(VERSION))
        (ctx.workdir / "models.config").write_text(model_config(ctx))
        batching = ctx.workdir / "batching_parameters.txt"
        if ctx.server.dynamic_batching:
            batching.write_text(batching_parameters(ctx))
        elif batching.exists():
            batching.unlink()

    def docker_argv(self, ctx: ServeContext) -> list[str]:
        workdir = ctx.workdir.resolve()
        argv = [
            "docker", "run", "--rm", "--init", "--name", container_name(ctx),
            "--label", f"{containers.LABEL_ROLE}=server:tfserving",
            "-p", f"127.0.0.1:{ctx.http_port}:{CONTAINER_REST_PORT}",
            "-p", f"127.0.0.1:{ctx.grpc_port}:{CONTAINER_GRPC_PORT}",
            "-v", f"{workdir / 'models'}:{CONTAINER_MODELS}:ro",
            "-v", f"{workdir / 'models.config'}:/config/models.config:ro",
        ]
        if ctx.cpus:  # the container, not only the CLI that starts it (taskset's part)
            argv += ["--cpuset-cpus", format_cpu_list(ctx.cpus)]
        server_flags = [
            f"--port={CONTAINER_GRPC_PORT}", f"--rest_api_port={CONTAINER_REST_PORT}",
            "--model_config_file=/config/models.config",
            f"--tensorflow_intra_op_parallelism={ctx.threads}",
            f"--tensorflow_inter_op_parallelism={ctx.server.instance_count}",
        ]
        if ctx.server.dynamic_batching:
            argv += ["-v", f"{workdir / 'batching_parameters.txt'}:/config/batching.txt:ro"]
            server_flags += ["--enable_batching=true",
                             "--batching_parameters_file=/config/batching.txt"]
        # The binary itself, not the image's entrypoint script (which adds --model_name and
        # --model_base_path from environment variables).
        return [*argv, "--entrypoint", "tensorflow_model_server", image(), *server_flags]

    def launch_plan(self, ctx: ServeContext) -> LaunchPlan:
        if containers.runtime_from_env() == "docker":
            raise InferBenchError(
                "platform 'tfserving' starts its own container (the TF Serving image) and "
                "cannot run inside a stage container; fix: run it with the local runtime "
                f"(unset {containers.RUNTIME_ENV})")
        argv = [sys.executable, "-m", "inferbench.backends.tfserving", container_name(ctx),
                *self.docker_argv(ctx)]
        return LaunchPlan(argv=argv, ready_path=self.ready_path(ctx), cwd=ctx.workdir)

    def ready_path(self, ctx: ServeContext) -> str:
        return f"/v1/models/{ctx.model_name}"

    def version(self) -> str:
        return f"tensorflow_model_server ({image()})"

    def server_stats(self, base_url: str, model_name: str) -> ServerStats | None:
        return None  # see the module docstring


def supervise(name: str, argv: list[str]) -> int:
    """Run `docker run ...` (argv) and pass SIGTERM/SIGINT on; then make sure container
    `name` is gone even if the CLI did not get to stop it."""
    child = subprocess.Popen(argv)

    def forward(signum, _frame) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False,
                       timeout=30)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1], sys.argv[2:]))
