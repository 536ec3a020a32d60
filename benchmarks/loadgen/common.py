"""Helpers shared by the load-generator benchmarks: the reference server as a process."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inferbench.servers.reference_server import ReferenceServerProcess  # noqa: E402


@contextlib.contextmanager
def reference_server(service_ms: float, workers: int = 1,
                     *extra: str) -> Iterator[ReferenceServerProcess]:
    server = ReferenceServerProcess(service_ms, workers, *extra)
    try:
        yield server
    finally:
        server.stop()


def v2_body() -> tuple[bytes, dict[str, str]]:
    """The one request every tool sends: a 1x4 FP32 KServe V2 binary infer request."""
    import numpy as np

    from inferbench.load import v2protocol

    return v2protocol.encode_request("INPUT0", np.zeros((1, 4), np.float32), "OUTPUT0")


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
