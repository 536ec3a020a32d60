"""Environment provenance stored with every result: what ran, where, with which versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil

from inferbench.paths import project_root

_PACKAGES = ("inferbench", "torch", "onnx", "onnxruntime", "apache-airflow", "nvidia-pytriton",
             "fastapi", "uvicorn", "aiohttp", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    if os.environ.get("INFERBENCH_GIT_COMMIT"):  # set in images, which carry no .git
        return os.environ["INFERBENCH_GIT_COMMIT"]
    root = project_root()
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def nvml_gpus() -> list[dict[str, Any]]:
    """Name, driver and memory of each GPU NVML sees; empty on a host without one."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return [{"name": pynvml.nvmlDeviceGetName(h), "driver": pynvml.nvmlSystemGetDriverVersion(),
                 "memory_bytes": pynvml.nvmlDeviceGetMemoryInfo(h).total}
                for h in (pynvml.nvmlDeviceGetHandleByIndex(i)
                          for i in range(pynvml.nvmlDeviceGetCount()))]
    except Exception:  # noqa: BLE001 - CPU-only host
        return []


def collect_provenance() -> dict[str, Any]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": psutil.cpu_count(logical=True),
        "memory_bytes": psutil.virtual_memory().total,
        "gpus": nvml_gpus(),
        "packages": versions,
        "git_commit": git_commit(),
    }
