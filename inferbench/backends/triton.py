"""Triton Inference Server: the real `tritonserver` binary bundled in the nvidia-pytriton wheel.

That build ships only the Python backend, so the ONNX model is served by a Python-backend
model (`inferbench/servers/triton_model.py`, copied into the repository as `1/model.py`) that
runs ONNX Runtime in Triton's `triton_python_backend_stub` process. Triton still owns everything a
serving platform is measured on: HTTP/gRPC front ends, request queueing and scheduling,
the model instance and its stub IPC over shared memory.

What the wheel's binary needs to run outside PyTriton (found by reading pytriton's own
launcher, `pytriton/triton.py` and `pytriton/server/triton_server.py`):

- LD_LIBRARY_PATH with the wheel's bundled libraries (`nvidia_pytriton.libs`; the stub's
  RPATH is relative to its wheel location, which does not hold once it is copied) and the
  directory of the interpreter's own libpython, so the stub embeds the same CPython build
  as the venv instead of whatever `libpython3.X.so` the system loader finds first;
- PATH with the venv's bin/ first, so that the stub's embedded interpreter takes the
  venv's prefix and site-packages (see `_server_env`);
- the stub for this interpreter's Python version: the wheel keeps one per version under
  `python_backend_stubs/<X.Y>/`, but the Python backend (Triton 2.51) only looks for
  `triton_python_backend_stub` beside its own `libtriton_python.so`. So, like PyTriton,
  `prepare` assembles a backend directory in the workdir (the backend library, its
  `triton_python_backend_utils.py` and the matching stub; about 3 MB) and
  `--backend-directory` points there (the default is /opt/tritonserver/backends).

On GPU hosts the real target is NVIDIA's Triton image with its own backends: with
INFERBENCH_TRITON_IMAGE set (e.g. nvcr.io/nvidia/tritonserver:24.09-py3; the docker runtime
runs it as the serving container), the repository is generated for the image's
onnxruntime backend instead (the ONNX file in `1/`, instances on the GPU when the worker has
one), and INFERBENCH_TRITON_ACCELERATOR=tensorrt lets that backend build TensorRT engines
(Triton's `gpu_execution_accelerator`), which needs no separate plan file. This path cannot
run on a machine without the image; its repository and launch are unit-tested.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from inferbench import containers
from inferbench.backends.base import Backend, LaunchPlan, ServeContext, ServingDevice
from inferbench.errors import InferBenchError
from inferbench.platforms import (
    DeviceKind,
    ModelFormat,
    PlatformDescriptor,
    Transport,
    gpu_index,
)

if TYPE_CHECKING:
    from types import ModuleType

    from tritonclient.grpc.model_config_pb2 import ModelConfig

_DIST = "nvidia-pytriton"
IMAGE_ENV = "INFERBENCH_TRITON_IMAGE"
ACCELERATOR_ENV = "INFERBENCH_TRITON_ACCELERATOR"
ACCELERATORS = ("", "tensorrt")
_STUB = "triton_python_backend_stub"


def _wheel_root() -> Path:
    """site-packages directory holding `pytriton/` and `nvidia_pytriton.libs/`."""
    try:
        dist = distribution(_DIST)
    except PackageNotFoundError:
        raise InferBenchError(
            "platform 'triton' needs the tritonserver binary from the nvidia-pytriton wheel, "
            "which is not installed; fix: pip install 'inferbench[triton]'"
        ) from None
    return Path(dist.locate_file("")).resolve()


def _server_dir() -> Path:
    return _wheel_root() / "pytriton" / "tritonserver"


def _binary() -> Path:
    binary = _server_dir() / "bin" / "tritonserver"
    if not binary.is_file():
        raise InferBenchError(f"tritonserver binary missing at {binary}; fix: reinstall "
                              "nvidia-pytriton (pip install --force-reinstall nvidia-pytriton)")
    return binary


def _stub_for_this_python() -> Path:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = _server_dir() / "python_backend_stubs" / version / _STUB
    if not stub.is_file():
        raise InferBenchError(
            f"nvidia-pytriton has no Python-backend stub for Python {version} ({stub}); "
            "fix: run InferBench with a Python version the wheel ships a stub for"
        )
    return stub


def _libpython_dir() -> Path | None:
    """Directory of this interpreter's shared libpython, if it has one.

    A statically linked interpreter (no Py_ENABLE_SHARED) has none; the stub then loads a
    system libpython of the same X.Y, if the loader finds one."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and Path(libdir).is_dir():
        return Path(libdir)
    return None


def _site_packages() -> list[str]:
    """Where this environment's numpy and onnxruntime live, for the stub's sys.path."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def _model_config_pb2() -> ModuleType:
    """Triton's ModelConfig messages. Imported on use, not with this module: the module sits
    in tritonclient's gRPC package, whose import takes about 0.2 s (grpc, numpy), and only
    writing a repository needs it."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise InferBenchError("writing Triton's config.pbtxt needs tritonclient, which is not "
                              "installed; fix: pip install 'inferbench[triton]'") from None
    return model_config_pb2


def _config_text(config: ModelConfig) -> str:
    """config.pbtxt text of a ModelConfig: protobuf's own text format, as Triton parses it."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def _base_config(ctx: ServeContext, backend: str, kind: str) -> ModelConfig:
    """The ModelConfig parts every repository shares: the model's inputs (Triton's types are
    the V2 datatype names), one FP32 output, instances and batching from ctx.server."""
    pb = _model_config_pb2()
    config = pb.ModelConfig(name=ctx.model_name, backend=backend,
                            max_batch_size=ctx.max_batch_size)
    for tensor in ctx.inputs:
        config.input.add(name=tensor.name, data_type=getattr(pb, f"TYPE_{tensor.datatype}"),
                         dims=tensor.shape)
    config.output.add(name=Backend.output_name, data_type=pb.TYPE_FP32,
                      dims=[ctx.num_outputs])
    scheduling(config, ctx, kind)
    return config


def model_config(ctx: ServeContext, onnx_path: Path, site_packages: list[str]) -> str:
    """config.pbtxt of the served model."""
    config = _base_config(ctx, "python", "KIND_CPU")
    parameters = {
        "onnx_path": str(onnx_path),
        "site_packages": os.pathsep.join(site_packages),
        "intra_op_threads": str(ctx.threads),
    }
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return _config_text(config)


def image_model_config(ctx: ServeContext, gpu: bool, accelerator: str = "") -> str:
    """config.pbtxt for the Triton image's onnxruntime backend (the model in `1/model.onnx`)."""
    if accelerator == "tensorrt" and not gpu:
        raise InferBenchError(f"{ACCELERATOR_ENV}=tensorrt needs a GPU, and the spec's "
                              'hardware is "cpu"; fix: set hardware to "gpu", or unset it')
    config = _base_config(ctx, "onnxruntime", "KIND_GPU" if gpu else "KIND_CPU")
    # The same thread budget as every other platform (the backend's own parameter).
    config.parameters["intra_op_thread_count"].string_value = str(ctx.threads)
    if accelerator == "tensorrt":
        config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt")
    return _config_text(config)


def scheduling(config: ModelConfig, ctx: ServeContext, kind: str = "KIND_CPU") -> None:
    """Set instance_group and, when on, dynamic_batching of a ModelConfig from ctx.server.

    The batcher's largest batch is the model's max_batch_size (ctx.max_batch_size); the
    Python-backend model concatenates the requests Triton hands it into one ORT run."""
    server = ctx.server
    group = config.instance_group.add(count=server.instance_count, kind=kind)
    if kind == "KIND_GPU":  # on the GPU the spec's hardware names (gpu = gpu:0)
        group.gpus.append(gpu_index(ctx.device) or 0)
    if server.dynamic_batching:
        # Present even with every knob at its default: its presence turns the batcher on.
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.max_queue_delay_microseconds = server.max_queue_delay_us
        config.dynamic_batching.preferred_batch_size.extend(server.preferred_batch_sizes)



# The Python backend starts its stub through `bash -c` with the stub's and the model's
# paths pasted in unquoted, so a space (or any shell metacharacter) in the workdir makes the
# stub fail to start, and Triton then waits on it instead of exiting.
_SHELL_SAFE_PATH = re.compile(r"[A-Za-z0-9_./@%+=:,-]+")


def _check_workdir(ctx: ServeContext) -> None:
    workdir = str(ctx.workdir.resolve())
    if not _SHELL_SAFE_PATH.fullmatch(workdir) or not _SHELL_SAFE_PATH.fullmatch(ctx.model_name):
        raise InferBenchError(
            f"platform 'triton' cannot serve from {workdir!r} (model {ctx.model_name!r}): "
            "Triton's Python backend breaks on spaces and shell metacharacters in paths; "
            "fix: set INFERBENCH_HOME to a directory whose path has only letters, digits "
            "and _ . - / (and keep the model name to letters, digits and _ . -)"
        )


def _prepend(paths: list[str], variable: str) -> str:
    """`paths` first, then whatever the variable already holds in this environment."""
    existing = os.environ.get(variable)
    return os.pathsep.join([*paths, existing] if existing else paths)


def _server_env() -> dict[str, str]:
    """Environment of tritonserver, inherited by the Python-backend stub it forks."""
    lib_dirs = [str(p) for p in (_libpython_dir(),) if p is not None]
    lib_dirs.append(str(_wheel_root() / "nvidia_pytriton.libs"))
    return {
        "LD_LIBRARY_PATH": _prepend(lib_dirs, "LD_LIBRARY_PATH"),
        # The stub embeds Python in isolated mode (PYTHONPATH and PYTHONHOME are ignored)
        # without setting a program name, so CPython resolves the default "python3"
        # against PATH to find its prefix. With the venv's bin/ first it finds the venv's
        # python3 and pyvenv.cfg, and sys.path gets the venv's site-packages instead of
        # the base interpreter's, which may hold other versions (here: numpy 2.4 under
        # pyenv vs. 1.26 in the venv). It must happen at startup: the stub imports
        # numpy before model.py runs. PyTriton's launcher does the same.
        "PATH": _prepend([str(Path(sys.exec_prefix) / "bin")], "PATH"),
    }


class TritonBackend(Backend):
    has_model_stats = True  # the statistics extension
    name = "triton"
    descriptor = PlatformDescriptor(
        model_format=ModelFormat.ONNX,
        protocols={Transport.HTTP: "kserve-v2", Transport.GRPC: "kserve-v2-grpc"},
        startup_s=8.0,
        free_sequence=True,  # any sequence length the exported model takes
        # The wheel's build has only the Python backend, whose model runs ONNX Runtime on the
        # CPU; the GPU path is NVIDIA's image alone, and is not verified on a GPU here.
        devices={
            DeviceKind.CPU: "tritonserver from the nvidia-pytriton wheel (Python backend "
                            "running ONNX Runtime), or NVIDIA's Triton image",
            DeviceKind.GPU: f"only NVIDIA's Triton image ({IMAGE_ENV}, docker runtime): its "
                            f"onnxruntime backend, TensorRT with {ACCELERATOR_ENV}=tensorrt",
        },
    )

    @staticmethod
    def repository(ctx: ServeContext) -> Path:
        return ctx.workdir / "model_repository"

    @staticmethod
    def backend_directory(ctx: ServeContext) -> Path:
        return ctx.workdir / "backends"

    def prepare(self, ctx: ServeContext) -> None:
        onnx_path = ctx.model_path.resolve()
        if not onnx_path.is_file():
            raise InferBenchError(f"ONNX model {onnx_path} does not exist; the convert stage "
                                  "must run before the triton platform is prepared")
        repo = self.repository(ctx)
        # Start from an empty repository: Triton loads every model it finds there, so a
        # leftover model from an earlier attempt would be loaded (and timed) too.
        if repo.exists():
            shutil.rmtree(repo)
        model_dir = repo / ctx.model_name
        (model_dir / "1").mkdir(parents=True)
        if _image() is not None:
            self._prepare_for_image(ctx, onnx_path, model_dir)
            return
        _check_workdir(ctx)
        # The ONNX file is referenced in place, not copied: the dynamo exporter writes
        # weights to a `.onnx.data` file beside it, which a copy would have to follow.
        (model_dir / "config.pbtxt").write_text(
            model_config(ctx, onnx_path, _site_packages()))
        (model_dir / "1" / "model.py").write_text(
            files("inferbench.servers").joinpath("triton_model.py").read_text())

        # Copies, as PyTriton makes: the backend library's $ORIGIN-relative RPATH no longer
        # reaches nvidia_pytriton.libs from here, which LD_LIBRARY_PATH makes up for.
        python_backend = self.backend_directory(ctx) / "python"
        if python_backend.exists():
            shutil.rmtree(python_backend)
        shutil.copytree(_server_dir() / "backends" / "python", python_backend,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(_stub_for_this_python(), python_backend / _STUB)

    @staticmethod
    def _prepare_for_image(ctx: ServeContext, onnx_path: Path, model_dir: Path) -> None:
        # The image's onnxruntime backend reads `1/model.onnx`; the dynamo exporter's
        # external weights (`model.onnx.data`) keep their name beside it, as the ONNX file
        # refers to them by that name.
        for part in onnx_path.parent.glob(onnx_path.name + "*"):
            shutil.copy2(part, model_dir / "1" / part.name.replace(onnx_path.name, "model.onnx",
                                                                    1))
        (model_dir / "config.pbtxt").write_text(
            image_model_config(ctx, gpu=ctx.device != DeviceKind.CPU.value,
                               accelerator=_accelerator()))

    def launch_plan(self, ctx: ServeContext) -> LaunchPlan:
        image = _image()
        if image is not None:
            gpu = containers.gpu_count() != 0  # -1: all GPUs
            return LaunchPlan(argv=["tritonserver", f"--model-repository={self.repository(ctx)}",
                                    *self._endpoint_flags(ctx),
                                    f"--allow-gpu-metrics={'true' if gpu else 'false'}"],
                              image=image, ready_path=self.ready_path(ctx))
        _check_workdir(ctx)
        argv = [
            str(_binary()),
            f"--model-repository={self.repository(ctx)}",
            f"--backend-directory={self.backend_directory(ctx)}",
            # The Python backend names its shared-memory regions with a fixed default
            # prefix; two servers on one host (a stale one, parallel tests) would collide.
            # The HTTP port is unique among live servers on this host.
            f"--backend-config=python,shm-region-prefix-name=inferbench_{ctx.http_port}_",
            *self._endpoint_flags(ctx),
            "--allow-gpu-metrics=false",
            # The config is complete; auto-complete would start an extra stub just to ask
            # model.py for a config (slower cold start, and it would change nothing).
            "--disable-auto-complete-config",
        ]
        return LaunchPlan(argv=argv, env=_server_env(), ready_path=self.ready_path(ctx),
                          cwd=ctx.workdir)

    def ask_serving_device(self, ctx: ServeContext, base_url: str) -> ServingDevice:
        """The instance group Triton loaded the model with (its model config endpoint):
        KIND_GPU on its first listed GPU, anything else the CPU; on the GPU, the execution
        accelerators its config names (TensorRT) or its backend."""
        import json
        import urllib.request

        url = f"{base_url}/v2/models/{ctx.model_name}/config"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                config = json.loads(response.read())
        except (OSError, ValueError) as exc:
            raise InferBenchError(f"Triton's model config at {url} is unreadable ({exc}); "
                                  "where the model runs cannot be told") from None
        accelerators = [a.get("name") for a in ((config.get("optimization") or {}).get(
            "execution_accelerators") or {}).get("gpu_execution_accelerator") or []]
        for group in config.get("instance_group") or []:
            if group.get("kind") == "KIND_GPU":
                return ServingDevice(f"gpu:{(group.get('gpus') or [0])[0]}",
                                     ",".join(filter(None, accelerators))
                                     or config.get("backend"))
        return ServingDevice(DeviceKind.CPU.value)

    @staticmethod
    def _endpoint_flags(ctx: ServeContext) -> list[str]:
        """Ports, metrics, readiness and error handling: the same from the wheel and image."""
        return [
            "--http-address=127.0.0.1", f"--http-port={ctx.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={ctx.grpc_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={ctx.metrics_port}",
            "--allow-metrics=true",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--log-verbose=0",
        ]

    def version(self) -> str:
        image = _image()
        return f"tritonserver image {image}" if image is not None else _version()


def _image() -> str | None:
    """The official Triton image to serve from, when this worker is configured for it."""
    return os.environ.get(IMAGE_ENV) or None


def _accelerator() -> str:
    accelerator = os.environ.get(ACCELERATOR_ENV, "")
    if accelerator not in ACCELERATORS:
        raise InferBenchError(f"environment {ACCELERATOR_ENV}={accelerator!r} is invalid; "
                              "expected 'tensorrt' or empty (plain onnxruntime)")
    return accelerator


@functools.cache
def _version() -> str:
    """`tritonserver <X.Y.Z> (nvidia-pytriton <wheel version>)`.

    The binary has no --version and the number is not a string in its files, but it prints
    `server_version` in the options table during startup. Asking it to load a model that
    does not exist from an empty repository, with every endpoint off, makes it print that
    table and exit at once (about 30 ms): no port is opened and no model loaded.
    """
    wheel = distribution(_DIST).version
    with tempfile.TemporaryDirectory(prefix="inferbench-triton-version-") as empty:
        try:
            result = subprocess.run(
                [str(_binary()), f"--model-repository={empty}", f"--backend-directory={empty}",
                 "--model-control-mode=explicit", "--load-model=__inferbench_version_probe__",
                 "--allow-http=false", "--allow-grpc=false", "--allow-metrics=false",
                 "--pinned-memory-pool-byte-size=0", "--exit-on-error=true"],
                check=False,  # it exits 1 by design (the probe model does not exist)
                env={**os.environ, **_server_env()}, capture_output=True, text=True,
                timeout=30, stdin=subprocess.DEVNULL,
            )
            match = re.search(r"\|\s*server_version\s*\|\s*(\S+)", result.stdout + result.stderr)
        except (OSError, subprocess.TimeoutExpired):
            match = None
    # Provenance must not fail a benchmark: fall back to the wheel's version alone.
    return f"tritonserver {match.group(1) if match else 'unknown'} (nvidia-pytriton {wheel})"
