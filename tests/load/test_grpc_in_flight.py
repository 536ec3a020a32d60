"""gRPC sends are capped in flight, as HTTP/1.1 sends are by their connections: against a
server that accepts and never answers, sends beyond the cap fail at once instead of piling
up, and the cap frees as the hung calls time out."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from inferbench.load.grpc_transport import GRPC_STATUS_BASE, GrpcPool


def test_sends_beyond_the_cap_fail_at_once_and_the_cap_frees_on_timeouts():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # the kernel accepts; nobody ever speaks HTTP/2 back

    async def scenario():
        pool = GrpcPool(f"127.0.0.1:{listener.getsockname()[1]}", "/p.S/M", time.monotonic_ns,
                        timeout_s=0.5, max_in_flight=5)
        try:
            answers = [(await pool.acquire()).send(b"x") for _ in range(5)]
            assert pool.try_acquire() is None
            with pytest.raises(ConnectionRefusedError, match="all 5 calls are in flight"):
                await pool.acquire()
            done = await asyncio.gather(*answers)
            # Each hung call ends as a gRPC error (its deadline), and frees its place.
            assert all(r.status > GRPC_STATUS_BASE for r in done)
            assert pool.in_flight == 0 and pool.try_acquire() is not None
        finally:
            pool.close()

    try:
        asyncio.run(scenario())
    finally:
        listener.close()
