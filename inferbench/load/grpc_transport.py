"""gRPC as a transport of the load generator, beside the raw HTTP/1.1 one (load/http.py).

The issuer keeps its own event loop and schedule; a gRPC send hands the prepared request
bytes to grpcio's C core (`future()` returns at once, the core does the I/O on its own
threads over one HTTP/2 channel) and the completion callback resolves an asyncio future on
the issuer's loop. Requests are serialized protobuf bytes, encoded once before the run, and
the call carries them unserialized, so no protobuf work happens while issuing.

A request's URL names the server and the method: `grpc://HOST:PORT/package.Service/Method`.
Status: OK is recorded as 200 (what the analysis counts as a good answer); a gRPC error as
GRPC_STATUS_BASE + its status code (e.g. 1014 for UNAVAILABLE), so it counts as a failure
and still says which one. One request at a time per connection is an HTTP/1.1 limit that
HTTP/2 does not have: every send goes on the one channel. What HTTP/1.1 bounds by its
connections is bounded here by a cap on the calls in flight (the same number): a send
beyond it fails at once, as one finding every connection busy does, instead of piling up
calls on a server that stopped answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

from inferbench.errors import InferBenchError
from inferbench.load.http import MAX_CONNECTIONS, Response

GRPC_SCHEME = "grpc"
GRPC_STATUS_BASE = 1000
OK_STATUS = 200


def is_grpc_url(url: str) -> bool:
    return url.startswith(GRPC_SCHEME + "://")


def split_grpc_url(url: str) -> tuple[str, str]:
    """('host:port', '/package.Service/Method') of a grpc:// request URL."""
    parts = urlsplit(url)
    if parts.scheme != GRPC_SCHEME or not parts.hostname or not parts.port \
            or parts.path.count("/") != 2:
        raise ValueError(f"a gRPC request URL is grpc://HOST:PORT/package.Service/Method, "
                         f"got {url!r}")
    return f"{parts.hostname}:{parts.port}", parts.path


def grpc_module():
    try:
        import grpc
    except ImportError:
        raise InferBenchError("the gRPC protocol needs grpcio; fix: pip install -e "
                              "'.[grpc]'") from None
    return grpc


class GrpcConnection:
    """Sends on the pool's channel; one object serves every request in flight."""

    def __init__(self, pool: GrpcPool) -> None:
        self.pool = pool

    def send(self, raw: bytes) -> asyncio.Future:
        pool = self.pool
        future = pool.loop.create_future()
        pool.in_flight += 1  # back down in _resolve, on the issuer's loop
        call = pool.method.future(raw, timeout=pool.timeout_s)

        def done(call) -> None:  # on a grpcio thread
            now = pool.clock()
            code = call.code()
            if code == pool.ok_code:
                response = Response(OK_STATUS, now, now, len(call.result()))
            else:
                response = Response(GRPC_STATUS_BASE + code.value[0], now, now, 0)
            pool.loop.call_soon_threadsafe(_resolve, pool, future, response)

        call.add_done_callback(done)
        return future

    def close(self) -> None:
        """Nothing per request: a late answer cannot land on another request in HTTP/2."""


def _resolve(pool: GrpcPool, future: asyncio.Future, response: Response) -> None:
    pool.in_flight -= 1
    if not future.done():
        future.set_result(response)


class GrpcPool:
    """The ConnectionPool interface the issuer uses (try_acquire / acquire / close) over
    one gRPC channel to one server method."""

    def __init__(self, target: str, method: str, clock: Callable[[], int],
                 timeout_s: float = 60.0, max_in_flight: int = MAX_CONNECTIONS) -> None:
        grpc = grpc_module()
        self.clock, self.timeout_s = clock, timeout_s
        self.max_in_flight, self.in_flight = max_in_flight, 0
        self.resent = 0  # the channel reconnects by itself; no request is sent twice here
        self.loop = asyncio.get_running_loop()
        self.ok_code = grpc.StatusCode.OK
        # Large tensors: lift the 4 MB default message limits.
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        # No serializers: requests are already bytes, answers stay bytes.
        self.method = self.channel.unary_unary(method)
        self._conn = GrpcConnection(self)

    def try_acquire(self) -> GrpcConnection | None:
        return self._conn if self.in_flight < self.max_in_flight else None

    async def acquire(self) -> GrpcConnection:
        if self.in_flight >= self.max_in_flight:
            raise ConnectionRefusedError(f"all {self.max_in_flight} calls are in flight: "
                                         "the server is not keeping up")
        return self._conn

    def close(self) -> None:
        self.channel.close()
