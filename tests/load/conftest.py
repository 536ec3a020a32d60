"""The reference server (a real process on a real socket) for load-generator tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from inferbench.servers.reference_server import ReferenceServerProcess


@pytest.fixture
def reference_server() -> Iterator[Callable[..., ReferenceServerProcess]]:
    """Factory: reference_server(service_ms=..., workers=..., extra args), stopped after."""
    started: list[ReferenceServerProcess] = []

    def start(service_ms: float = 5.0, workers: int = 1, *extra: str) -> ReferenceServerProcess:
        server = ReferenceServerProcess(service_ms, workers, *extra, ready_timeout_s=20)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
