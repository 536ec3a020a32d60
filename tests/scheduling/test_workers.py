"""Worker pools and their hardware class (inferbench/scheduling/workers.py)."""

from __future__ import annotations

import pytest

from inferbench.errors import InferBenchError
from inferbench.platforms import DeviceKind
from inferbench.scheduling.workers import (
    eligible_workers,
    host_class,
    parse_worker_pool,
    sort_workers,
    worker_names,
)


def test_pool_names_carry_the_class_and_parse_back():
    assert worker_names(2, "gpu") == ["gpu-worker-0", "gpu-worker-1"]
    assert parse_worker_pool("gpu-worker-12") == (DeviceKind.GPU, 12)
    assert parse_worker_pool("cpu-worker-0") == (DeviceKind.CPU, 0)
    for other in ("worker-0", "default_pool", "tpu-worker-0", "gpu-worker-", "gpu-worker-1x"):
        assert parse_worker_pool(other) is None, other
    assert sort_workers(["gpu-worker-10", "default_pool", "gpu-worker-2", "cpu-worker-1",
                         "worker-0"]) == ["cpu-worker-1", "gpu-worker-2", "gpu-worker-10"]


def test_gpu_runs_need_gpu_workers_and_cpu_runs_prefer_cpu_workers():
    mixed = ["cpu-worker-0", "gpu-worker-0", "gpu-worker-1"]
    assert eligible_workers(mixed, "gpu:1") == ["gpu-worker-0", "gpu-worker-1"]
    assert eligible_workers(mixed, "cpu") == ["cpu-worker-0"]
    assert eligible_workers(["gpu-worker-0"], "cpu") == ["gpu-worker-0"]  # its CPUs
    assert eligible_workers(["cpu-worker-0", "cpu-worker-1"], "gpu") == []


def test_the_host_class_comes_from_the_setting_or_nvml():
    assert host_class({"INFERBENCH_WORKER_CLASS": "gpu"}) is DeviceKind.GPU
    with pytest.raises(InferBenchError, match=r"INFERBENCH_WORKER_CLASS 'tpu'.*'cpu', 'gpu'"):
        host_class({"INFERBENCH_WORKER_CLASS": "tpu"})
    from inferbench.metrics.provenance import nvml_gpus

    # Unset: what NVML sees on this host (none on a CPU-only CI machine).
    assert host_class({}) is (DeviceKind.GPU if nvml_gpus() else DeviceKind.CPU)
