"""How a server shares its GPU: alone (the default) or through NVIDIA MPS.

MPS (the Multi-Process Service) lets the CUDA work of several processes run on one GPU at
once instead of time-slicing between their contexts; it matters where a platform serves
with several processes (TorchServe's and MLServer's workers). With `"sharing": "mps"` the
serve stage starts an MPS control daemon of its own for the server it is about to start
(its pipe and log directories passed to the server in CUDA_MPS_PIPE_DIRECTORY /
CUDA_MPS_LOG_DIRECTORY, so only that server's processes use it) and every stop of that
server (the measure task's, a retry's, the teardown's) quits it. The endpoint, and so the
deployment's provenance, records it.

Only the local runtime: a containerised server would need the daemon's pipes shared into
its container (and the host's IPC namespace). A host without the MPS control program is
refused with the reason before anything is built.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from inferbench.errors import InferBenchError

MPS_CONTROL = "nvidia-cuda-mps-control"
CONTROL_TIMEOUT_S = 10.0


class Sharing(StrEnum):
    NONE = "none"
    MPS = "mps"


def check_mps_available(runtime: str) -> None:
    """Raise with the reason and the fix where MPS cannot be started for a server."""
    if runtime != "local":
        raise InferBenchError(
            f"sharing 'mps' runs the MPS daemon beside a local server; the {runtime!r} "
            "runtime serves from containers, which would need its pipes and the host's IPC "
            "namespace; fix: set INFERBENCH_RUNTIME=local on the worker, or sharing to 'none'")
    if shutil.which(MPS_CONTROL) is None:
        raise InferBenchError(
            f"sharing 'mps': {MPS_CONTROL} is not on this worker's PATH (no NVIDIA MPS here); "
            "fix: install the NVIDIA driver's CUDA MPS utilities on the GPU worker, or set "
            "sharing to 'none'")


def mps_env(server_tag: str, log_dir: Path) -> dict[str, str]:
    """The daemon's directories for one server. The pipe directory is short and under the
    temporary directory (MPS makes sockets there, whose paths are limited to ~100 bytes);
    the log directory stays with the run."""
    digest = hashlib.sha256(server_tag.encode()).hexdigest()[:16]
    return {"CUDA_MPS_PIPE_DIRECTORY": str(Path(tempfile.gettempdir()) / f"ib-mps-{digest}"),
            "CUDA_MPS_LOG_DIRECTORY": str(log_dir)}


def _control(env: dict[str, str], command: str) -> subprocess.CompletedProcess:
    return subprocess.run([MPS_CONTROL], input=command + "\n", env={**os.environ, **env},
                          capture_output=True, text=True, timeout=CONTROL_TIMEOUT_S)


def mps_running(env: dict[str, str]) -> bool:
    """Whether the control daemon of these directories answers."""
    try:
        return _control(env, "get_server_list").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def start_mps(env: dict[str, str], runtime: str) -> dict[str, Any]:
    """Start the control daemon (or keep the one these directories already have); returns
    what the endpoint records."""
    check_mps_available(runtime)
    for key in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    if not mps_running(env):
        started = subprocess.run([MPS_CONTROL, "-d"], env={**os.environ, **env},
                                 capture_output=True, text=True, timeout=CONTROL_TIMEOUT_S)
        if started.returncode != 0 or not mps_running(env):
            raise InferBenchError(
                f"{MPS_CONTROL} -d did not start an MPS control daemon (exit "
                f"{started.returncode}: {(started.stderr or started.stdout).strip()[-300:]}); "
                f"fix: see {env['CUDA_MPS_LOG_DIRECTORY']}/control.log, check that the GPU's "
                "compute mode allows MPS, or set sharing to 'none'")
    return {"mode": Sharing.MPS.value, "env": env, "started_at": time.time()}


def stop_mps(env: dict[str, str]) -> bool:
    """Quit the control daemon of these directories (it stops its MPS server with it);
    True if one was running. Safe to repeat."""
    if shutil.which(MPS_CONTROL) is None or not mps_running(env):
        return False
    _control(env, "quit")
    deadline = time.monotonic() + CONTROL_TIMEOUT_S
    while mps_running(env):
        if time.monotonic() > deadline:
            raise InferBenchError(f"the MPS control daemon of {env['CUDA_MPS_PIPE_DIRECTORY']} "
                                  f"did not quit within {CONTROL_TIMEOUT_S:.0f} s; fix: "
                                  f"`echo quit | {MPS_CONTROL}` with that pipe directory")
        time.sleep(0.1)
    return True
