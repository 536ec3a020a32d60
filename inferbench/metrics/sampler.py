"""Samples CPU and memory of the server's process tree and of the load generator itself,
and GPU utilisation / memory / power through NVML when a GPU is present.

Runs in a separate (forked) process during a measurement: psutil calls hold the GIL for
about a millisecond, which in a thread of the load generator would delay scheduled sends.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import psutil


class _Nvml:
    """NVML handles if the NVIDIA driver and nvidia-ml-py are present, else nothing.

    Besides utilisation, memory and power, each reading carries the GPU's total-energy
    counter (mJ since the driver loaded; Volta and later): the energy of a point is then the
    counter's difference, exact between readings, where power samples integrated over
    0.5 s would miss what happens between them. GPUs without the counter give None."""

    def __init__(self) -> None:
        self.handles: list = []
        self._no_counter: set[int] = set()
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                            for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001 - no GPU here is the normal case on CPU hosts
            self.handles = []

    def sample(self, t_ns: int) -> list[dict[str, Any]]:
        rows = []
        for i, h in enumerate(self.handles):
            util = self.nvml.nvmlDeviceGetUtilizationRates(h)
            mem = self.nvml.nvmlDeviceGetMemoryInfo(h)
            power_mw = self.nvml.nvmlDeviceGetPowerUsage(h)
            rows.append({"source": f"gpu{i}", "t_ns": t_ns, "gpu_util_pct": float(util.gpu),
                         "gpu_mem_bytes": int(mem.used), "gpu_power_w": power_mw / 1000.0,
                         "gpu_energy_mj": self._energy_mj(i, h)})
        return rows

    def _energy_mj(self, index: int, handle) -> int | None:
        if index in self._no_counter:
            return None
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except self.nvml.NVMLError:  # not supported by this GPU: power integration instead
            self._no_counter.add(index)
            return None


class _Sampling:
    """The sampling loop; runs in the child process."""

    def __init__(self, server_pid: int | None, client_pid: int) -> None:
        self.samples: list[dict[str, Any]] = []
        self._server = self._process(server_pid)
        self._client = self._process(client_pid)
        self._known: dict[tuple[int, int], psutil.Process] = {}
        self._nvml = _Nvml()

    @staticmethod
    def _process(pid: int | None) -> psutil.Process | None:
        try:
            return psutil.Process(pid) if pid else None
        except psutil.NoSuchProcess:
            return None

    def _tree_usage(self, root: psutil.Process) -> tuple[float, int]:
        """CPU % and RSS of a process and all its children (Triton forks a stub per model)."""
        cpu, rss = 0.0, 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return cpu, rss
        for proc in procs:
            # cpu_percent needs the same Process object between calls to measure an interval.
            proc = self._known.setdefault((root.pid, proc.pid), proc)
            try:
                cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return cpu, rss

    def sample(self) -> None:
        t_ns = time.time_ns()
        for source, proc in (("server", self._server), ("client", self._client)):
            if proc is not None:
                cpu, rss = self._tree_usage(proc)
                self.samples.append({"source": source, "t_ns": t_ns, "cpu_pct": cpu,
                                     "rss_bytes": rss})
        self.samples.extend(self._nvml.sample(t_ns))

    def prime(self) -> None:
        for proc in (self._server, self._client):
            if proc is not None:
                self._tree_usage(proc)


def _sampling_main(server_pid, client_pid, period_s, stop, conn) -> None:
    sampling = _Sampling(server_pid, client_pid)
    sampling.prime()
    while not stop.wait(period_s):
        if os.getppid() != client_pid:
            return  # the stage died without stopping us (SIGKILL): a daemon outlives it
        sampling.sample()
    conn.send(sampling.samples)
    conn.close()


class ResourceSampler:
    """Context manager: samples from enter to exit; `.samples` holds the rows afterwards."""

    def __init__(self, server_pid: int | None, period_s: float = 0.5) -> None:
        ctx = multiprocessing.get_context("fork")  # no re-import: starts in milliseconds
        self.samples: list[dict[str, Any]] = []
        self._stop = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._child = ctx.Process(target=_sampling_main, name="resource-sampler", daemon=True,
                                  args=(server_pid, os.getpid(), period_s, self._stop, send))

    def __enter__(self) -> ResourceSampler:
        self._child.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._recv.poll(30):
            self.samples = self._recv.recv()
        self._child.join(10)
