"""The issuer against a raw-socket server that answers badly: responses split at random
bytes, chunked edge cases, bad lengths, trailing bytes, answers nobody asked for, resets.
Every request must be recorded exactly once, with the status the server meant for it (or
0 where no valid answer came), and nothing may escape the event loop."""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import struct
import threading
import time

import pytest

from inferbench.load.runner import Request, StopRule, run_point

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

# (name, bytes the server sends, what happens to the connection after, status recorded)
VARIANTS: list[tuple[str, bytes, str, int]] = [
    ("content-length", OK, "keep", 200),
    ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n", "keep", 200),
    ("chunk extensions and trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n", "keep", 200),
    ("100 Continue first", b"HTTP/1.1 100 Continue\r\n\r\n" + OK, "keep", 200),
    ("204 without a body", b"HTTP/1.1 204 No Content\r\n\r\n", "keep", 204),
    ("server error", b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nerr",
     "keep", 500),
    ("body to the close", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello", "close", 200),
    ("non-numeric length", b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
     "close", 0),
    ("body cut short", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello", "close", 0),
    ("absurd chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"fffffffffffffffffff\r\nhello\r\n", "close", 0),
    ("not HTTP at all", b"\x00\x01garbage\r\n\r\n", "close", 0),
    ("trailing garbage", OK + b"XYZ", "close", 200),
    # Sent whole: a second answer that comes after the client's next request went out is
    # that request's answer as far as HTTP/1.1 can tell (no request ids); one that comes
    # before it is caught, and the connection closed.
    ("an answer nobody asked for", OK + OK, "keep whole", 200),
    ("reset before answering", b"", "reset", 0),
]


class RawServer:
    """Reads each HTTP request (head + Content-Length body) and answers with the next
    variant of a seeded sequence, split into random pieces sent a moment apart; logs, by
    the request's id (the last part of its path), the status it meant that request to get."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.meant: dict[int, int] = {}
        self.lock = threading.Lock()
        self.stopping = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket, pending: bytes
                      ) -> tuple[int, bytes] | None:
        """(the request's id, the bytes read past it), None at the end of the stream."""
        while b"\r\n\r\n" not in pending:
            data = conn.recv(65536)
            if not data:
                return None
            pending += data
        head, _, rest = pending.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            data = conn.recv(65536)
            if not data:
                return None
            rest += data
        request_id = int(head.split(b" ")[1].rsplit(b"/", 1)[1])
        return request_id, rest[length:]

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        with conn:
            while True:
                try:
                    read = self._read_request(conn, pending)
                except OSError:
                    return
                if read is None:
                    return
                request_id, pending = read
                with self.lock:
                    _, payload, after, status = self.rng.choice(VARIANTS)
                    cuts = [] if after.endswith("whole") else sorted(self.rng.sample(
                        range(1, len(payload)), min(3, max(len(payload) - 1, 0))))
                    self.meant[request_id] = status
                try:
                    for piece in (payload[a:b] for a, b in
                                  zip([0, *cuts], [*cuts, len(payload)], strict=True)):
                        conn.sendall(piece)
                        time.sleep(0.0005)
                    if after == "reset":  # RST instead of FIN
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    if not after.startswith("keep"):
                        return
                except OSError:
                    return

    def close(self) -> None:
        self.stopping = True
        # close() alone leaves a thread blocked in accept() for the rest of the session;
        # shutdown() wakes it.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.acceptor.join(timeout=5)


def requests_with_ids(port: int, n: int) -> list[Request]:
    """n requests told apart by their path: one client sends them in this order, so the
    k-th record is request k's (as long as fewer than n are sent)."""
    return [Request(f"http://127.0.0.1:{port}/v2/models/m/infer/{k}", b"{}", {})
            for k in range(n)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_request_is_recorded_once_with_the_answer_meant_for_it(seed, caplog):
    server = RawServer(seed)
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            records = run_point(requests_with_ids(server.port, 2000), concurrency=1,
                                seed=seed, warmup_s=0, rule=StopRule(0.0, 300, 30.0),
                                request_timeout_s=2.0)
    finally:
        server.close()
    status = records.arrays()["status"].tolist()
    assert 300 <= len(status) < 2000
    for k, got in enumerate(status):
        # A request the server never read went into a connection it was closing: failed.
        assert got == server.meant.get(k, 0), (k, got, server.meant.get(k))
    assert set(server.meant) <= set(range(len(status)))  # nothing answered went unrecorded
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


def test_an_answer_nobody_asked_for_never_reaches_the_next_request():
    """Two clients: a connection that got an unsolicited second answer is closed, never
    put back in the pool twice, where two requests would share it and one would take the
    other's answer (and the other time out)."""
    class TwiceFirst(RawServer):
        def __init__(self) -> None:
            super().__init__(0)
            self.connections = 0

        def _serve(self, conn: socket.socket) -> None:
            with self.lock:
                self.connections += 1
            pending, first = b"", True
            with conn:
                while (read := self._read_request(conn, pending)) is not None:
                    request_id, pending = read
                    with self.lock:
                        self.meant[request_id] = 200
                    conn.sendall(OK + OK if first else OK)
                    first = False

    server = TwiceFirst()
    try:
        records = run_point(requests_with_ids(server.port, 1), concurrency=2, seed=0,
                            warmup_s=0, rule=StopRule(1.0, 200, 20.0), request_timeout_s=1.0)
    finally:
        server.close()
    status = records.arrays()["status"]
    assert (status == 200).all(), f"{(status != 200).sum()} of {status.size} failed"
