"""The reference server (a real process on a real socket) for load-generator tests."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from inferbench.netutil import free_port, poll_http_ok
from inferbench.servers.reference_server import parse_log


class RefServer:
    def __init__(self, url: str, process: subprocess.Popen) -> None:
        self.url, self.process = url, process

    def log(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/log", timeout=10) as response:
            return parse_log(response.read().decode())

    def clear_log(self) -> None:
        req = urllib.request.Request(f"{self.url}/log", method="DELETE")
        urllib.request.urlopen(req, timeout=10).close()


@pytest.fixture
def reference_server() -> Iterator[Callable[..., RefServer]]:
    """Factory: reference_server(service_ms=..., workers=..., extra args) -> RefServer."""
    started: list[subprocess.Popen] = []

    def start(service_ms: float = 5.0, workers: int = 1, *extra: str) -> RefServer:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "inferbench.servers.reference_server", "--port", str(port),
             "--service-ms", str(service_ms), "--workers", str(workers), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        assert poll_http_ok(f"{url}/v2/health/ready", 20), "reference server did not start"
        return RefServer(url, process)

    yield start
    for process in started:
        process.terminate()
        process.wait(10)
