"""A minimal HTTP/1.1 keep-alive client on asyncio protocols, built for the load generator.

General-purpose clients spend a few hundred microseconds of Python per request building
and parsing messages; on a 2-core machine that made sends late. Here each request is a
byte string encoded once before the run, a send is one `transport.write`, and the
response parser only looks for the status, the body length and the end of the body.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

HEADER_END = b"\r\n\r\n"


def encode_http_request(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    """(host, port, raw bytes of a POST request with keep-alive)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.hostname}:{port}",
             f"Content-Length: {len(body)}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
    return parts.hostname, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Response:
    __slots__ = ("done_ns", "first_byte_ns", "size", "status")

    def __init__(self, status: int, first_byte_ns: int, done_ns: int, size: int) -> None:
        self.status, self.first_byte_ns, self.done_ns, self.size = status, first_byte_ns, \
            done_ns, size


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.future: asyncio.Future | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.buffer = bytearray()
        self.first_byte_ns = -1
        self.header_length = -1
        self.body_length = -1
        self.status = 0
        self.chunked = False
        self.keep_alive = True

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def send(self, raw: bytes) -> asyncio.Future:
        self.future = self.pool.loop.create_future()
        assert self.transport is not None
        self.transport.write(raw)
        return self.future

    def data_received(self, data: bytes) -> None:
        if self.first_byte_ns < 0:
            self.first_byte_ns = self.pool.clock()
        self.buffer += data
        if self.header_length < 0 and not self._parse_head():
            return
        end = self._body_end()
        if end is None:
            return
        response = Response(self.status, self.first_byte_ns, self.pool.clock(), end)
        future, keep = self.future, self.keep_alive
        self._reset()
        self.future = None
        if keep:
            self.pool.release(self)
        else:
            self.close()
        if future is not None and not future.done():
            future.set_result(response)

    def _parse_head(self) -> bool:
        end = self.buffer.find(HEADER_END)
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        self.status = int(head[0].split(" ", 2)[1])
        for line in head[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                self.body_length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                self.chunked = True
            elif name == "connection" and value == "close":
                self.keep_alive = False
        self.header_length = end + len(HEADER_END)
        return True

    def _body_end(self) -> int | None:
        """Total response size once the body is complete, else None."""
        if self.chunked:
            # Enough for servers that stream a body in chunks: wait for the last chunk.
            return len(self.buffer) if self.buffer.endswith(b"0\r\n\r\n") else None
        if self.body_length < 0:
            return None  # body ends at connection close
        total = self.header_length + self.body_length
        return total if len(self.buffer) >= total else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.future is not None and not self.future.done():
            if self.body_length < 0 and self.header_length >= 0 and not self.chunked:
                self.future.set_result(Response(self.status, self.first_byte_ns,
                                                self.pool.clock(), len(self.buffer)))
            else:
                self.future.set_exception(ConnectionError("connection closed by the server"))

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()


# select() only takes file descriptors below 1024 (FD_SETSIZE); the issuer's loop runs on it,
# so the pool stays well below, counting connections still being opened (a burst of sends
# all finding the pool busy would otherwise open far more at once), and never hands the
# loop a socket whose descriptor select() cannot watch (the process holds other descriptors
# too). A request that finds no connection at the limit fails (recorded with status 0, the
# server not keeping up) instead of crashing the event loop.
MAX_CONNECTIONS = 900
SELECT_FD_LIMIT = 1024


class ConnectionPool:
    """Idle keep-alive connections to one host; opens more when all are busy."""

    def __init__(self, host: str, port: int, clock: Callable[[], int],
                 max_connections: int | None = None) -> None:
        self.host, self.port, self.clock = host, port, clock
        self.max_connections = max_connections or MAX_CONNECTIONS
        self.loop = asyncio.get_running_loop()
        self.idle: list[Connection] = []
        self.all: set[Connection] = set()
        self.opening = 0  # connections being opened, not yet in `all`

    def try_acquire(self) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        return None

    async def acquire(self) -> Connection:
        conn = self.try_acquire()
        if conn is not None:
            return conn
        if len(self.all) + self.opening >= self.max_connections:
            raise ConnectionRefusedError(f"all {self.max_connections} connections are busy: "
                                         "the server is not keeping up")
        self.opening += 1
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if sock.fileno() >= SELECT_FD_LIMIT:
                sock.close()
                raise ConnectionRefusedError(
                    f"no file descriptor below {SELECT_FD_LIMIT} is free for a connection: "
                    "the server is not keeping up")
            sock.setblocking(False)
            try:
                await self.loop.sock_connect(sock, (self.host, self.port))
                _, conn = await self.loop.create_connection(lambda: Connection(self),
                                                            sock=sock)
            except BaseException:
                sock.close()
                raise
        finally:
            self.opening -= 1
        self.all.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        if not conn.closed:
            self.idle.append(conn)

    def forget(self, conn: Connection) -> None:
        self.all.discard(conn)

    def close(self) -> None:
        for conn in list(self.all):
            conn.close()
        self.idle.clear()
