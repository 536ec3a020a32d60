"""A minimal HTTP/1.1 keep-alive client on asyncio protocols, built for the load generator.

General-purpose clients spend a few hundred microseconds of Python per request building
and parsing messages; on a 2-core machine that made sends late. Here each request is a
byte string encoded once before the run, a send is one `transport.write`, and responses
are framed by llhttp (through httptools, the C parser uvicorn uses) with Python called only
for the few events the issuer needs: headers that say how the body ends, the end of the
head, and the end of each response.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools


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


class ResponseReader:
    """Frames HTTP/1.1 responses with llhttp (httptools) and calls
    `on_response(status, size, keep_alive)` once per complete response.

    Framing is the parser's: Content-Length, chunked bodies (whatever bytes a chunk holds,
    trailers included), bodiless statuses (204, 304), interim 1xx responses (skipped), and
    several responses in one read. Only the callbacks needed are defined: httptools calls
    just those, and hands over no body bytes, as none are kept. `size` counts the bytes read
    since the previous response ended; a read that holds the end of one response and the
    start of the next (pipelining, which the issuer never does) counts towards the first.
    """

    __slots__ = ("_delimited", "_on_response", "_parser", "headers_done", "received")

    def __init__(self, on_response: Callable[[int, int, bool], None]) -> None:
        self._on_response = on_response
        self._parser = httptools.HttpResponseParser(self)
        self.received = 0
        self.headers_done = False
        self._delimited = False  # Content-Length or chunked: the body does not end at EOF

    def feed(self, data: bytes) -> None:
        """Parse `data`; raises httptools.HttpParserError on a malformed response."""
        self.received += len(data)
        self._parser.feed_data(data)

    @property
    def status(self) -> int:
        """Status of the response in progress (0 before its status line)."""
        return self._parser.get_status_code() if self.received else 0

    def ends_at_close(self) -> bool:
        """Whether a response in progress is complete when the server closes the
        connection: one whose head is read and whose body has no declared length."""
        return self.headers_done and not self._delimited

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            self._delimited = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        self.headers_done = self._delimited = False
        if status < 200:
            return  # an interim response (100 Continue): the real one follows
        size, self.received = self.received, 0
        self._on_response(status, size, self._parser.should_keep_alive())


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time.

    A server may close an idle keep-alive connection (uvicorn after 5 s) just as a request
    is written to it; over a link with tens of ms of delay that race is often lost. As HTTP
    clients do (RFC 9112, 9.3.1: a client may retry an idempotent request on a connection
    closed before any answer), a request that got no byte of its answer on a connection
    that had already carried one is sent once more on a new connection; its latency still
    counts from its scheduled send, the lost attempt included. Only an orderly close (the
    server's FIN) is taken for that race; a reset is a failure."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.future: asyncio.Future | None = None
        self.closed = False
        self.first_byte_ns = -1
        self.reader = ResponseReader(self._response)
        self.answered = 0  # responses this connection carried
        self.raw = b""     # the request in flight, kept for its one resend

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def send(self, raw: bytes, future: asyncio.Future | None = None) -> asyncio.Future:
        self.future = future if future is not None else self.pool.loop.create_future()
        self.raw = raw
        assert self.transport is not None
        self.transport.write(raw)
        return self.future

    def data_received(self, data: bytes) -> None:
        if self.first_byte_ns < 0:
            self.first_byte_ns = self.pool.clock()
        try:
            self.reader.feed(data)
        except httptools.HttpParserError as exc:
            future, self.future = self.future, None
            self.close()
            if future is not None and not future.done():
                future.set_exception(ConnectionError(f"malformed HTTP response: {exc}"))

    def _response(self, status: int, size: int, keep_alive: bool) -> None:
        now = self.pool.clock()
        # A second response completed by the same read began in that read: about now.
        first = self.first_byte_ns if self.first_byte_ns >= 0 else now
        response = Response(status, first, now, size)
        future, self.future, self.first_byte_ns = self.future, None, -1
        self.answered += 1
        if future is None:
            # A response nobody asked for (a server answering twice): the connection's
            # framing can no longer be trusted. Released again, it would sit in the pool
            # twice, two requests would share it, and one would get the other's answer.
            self.close()
            return
        if keep_alive:
            self.pool.release(self)
        else:
            self.close()
        if not future.done():
            future.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.future is not None and not self.future.done():
            if (exc is None and self.answered and self.reader.received == 0
                    and not self.pool.closing):
                self.pool.resend(self.raw, self.future)  # a stale keep-alive connection
            elif self.reader.ends_at_close():
                self.future.set_result(Response(self.reader.status,
                                                self.first_byte_ns, self.pool.clock(),
                                                self.reader.received))
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


def resent_note(resent: int | None) -> list[str]:
    """What a point's verdict says of its resent requests (none: nothing)."""
    if not resent:
        return []
    return [f"{resent} request(s) sent again on a new connection after the server closed an "
            "idle keep-alive one; their latency includes the lost attempt"]


class ConnectionPool:
    """Idle keep-alive connections to one host; opens more when all are busy.

    It keeps one spare: whenever a send takes the last idle connection (or the server closes
    an idle one, e.g. at its keep-alive timeout), another is opened in the background. A send
    that finds every connection busy would otherwise wait for a TCP connect (1-3 ms on a busy
    host), and go out that late: at low rates that is most of the late sends."""

    def __init__(self, host: str, port: int, clock: Callable[[], int],
                 max_connections: int | None = None) -> None:
        self.host, self.port, self.clock = host, port, clock
        self.max_connections = max_connections or MAX_CONNECTIONS
        self.loop = asyncio.get_running_loop()
        self.idle: list[Connection] = []
        self.all: set[Connection] = set()
        self.opening = 0  # connections being opened, not yet in `all`
        self.resent = 0   # requests sent again after a stale connection closed (Connection)
        self._resends: set[asyncio.Task] = set()
        self.closing = False
        self._spare: asyncio.Task | None = None

    def try_acquire(self) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                if not self.idle:
                    self._open_spare()
                return conn
        return None

    async def acquire(self) -> Connection:
        conn = self.try_acquire()
        if conn is not None:
            return conn
        conn = await self._open()
        self._open_spare()
        return conn

    async def _open(self) -> Connection:
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

    def _open_spare(self) -> None:
        """Open one idle connection in the background, unless one is on its way."""
        if self.closing or self.idle or (self._spare is not None and not self._spare.done()):
            return

        async def open_one() -> None:
            try:
                conn = await self._open()
            except OSError:
                return  # the next send opens its own, and records what went wrong
            if self.closing:
                conn.close()
            else:
                self.idle.append(conn)

        self._spare = self.loop.create_task(open_one())

    def resend(self, raw: bytes, future: asyncio.Future) -> None:
        """Send `raw` again on a new connection, its answer (or failure) to `future`."""
        self.resent += 1

        async def send_again() -> None:
            try:
                conn = await self._open()
            except OSError as exc:
                if not future.done():
                    future.set_exception(ConnectionError(f"resend failed: {exc}"))
                return
            if future.done():  # timed out meanwhile: the connection is a spare
                self.release(conn)
            else:
                conn.send(raw, future)

        task = self.loop.create_task(send_again())
        self._resends.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._resends.discard)

    def release(self, conn: Connection) -> None:
        if not conn.closed:
            self.idle.append(conn)

    def forget(self, conn: Connection) -> None:
        self.all.discard(conn)
        if conn in self.idle:  # closed by the server while idle: keep a spare ready
            self.idle.remove(conn)
            if not self.idle:
                self._open_spare()

    def close(self) -> None:
        self.closing = True
        if self._spare is not None:
            self._spare.cancel()
        for conn in list(self.all):
            conn.close()
        self.idle.clear()
