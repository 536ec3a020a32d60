"""Helpers shared by the load-generator benchmarks: the reference server as a process."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inferbench.netutil import free_port, poll_http_ok  # noqa: E402
from inferbench.servers.reference_server import parse_log  # noqa: E402


class Server:
    def __init__(self, url: str) -> None:
        self.url = url
        self.infer_url = f"{url}/v2/models/reference/infer"

    def log(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/log", timeout=30) as response:
            return parse_log(response.read().decode())

    def clear_log(self) -> None:
        req = urllib.request.Request(f"{self.url}/log", method="DELETE")
        urllib.request.urlopen(req, timeout=10).close()


@contextlib.contextmanager
def reference_server(service_ms: float, workers: int = 1, *extra: str) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "inferbench.servers.reference_server", "--port", str(port),
         "--service-ms", str(service_ms), "--workers", str(workers), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        if not poll_http_ok(f"{url}/v2/health/ready", 30):
            raise RuntimeError("reference server did not start")
        yield Server(url)
    finally:
        process.terminate()
        process.wait(10)


def v2_body() -> tuple[bytes, dict[str, str]]:
    """The one request every tool sends: a 1x4 FP32 KServe V2 binary infer request."""
    import numpy as np

    from inferbench.load import v2protocol

    return v2protocol.encode_request("INPUT0", np.zeros((1, 4), np.float32), "OUTPUT0")


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
