"""The issuer's HTTP/1.1 response framing (inferbench/load/http.py): the reader on its own,
fed whole, split and pipelined responses, and a connection against a real socket whose
server writes a response in pieces at chosen points."""

from __future__ import annotations

import asyncio
import time

import pytest

from inferbench.load.http import ConnectionPool, ResponseReader

V2_BODY = (b'{"model_name":"m","id":"1","outputs":[{"name":"OUTPUT__0","datatype":"FP32",'
           b'"shape":[1,10],"data":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0]}]}')
CONTENT_LENGTH = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                  b"content-length: %d\r\n\r\n" % len(V2_BODY)) + V2_BODY
# A chunk whose data ends in the bytes of a last-chunk ("0\r\n\r\n"): only the chunk sizes
# say that the response goes on.
TRICKY_DATA = b'{"data": [1, 0]}\r\n0\r\n\r\n'
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"%x\r\n" % len(TRICKY_DATA) + TRICKY_DATA + b"\r\n"
           + b"5\r\nab0\r\n\r\n"  # data "ab0\r\n": the buffer ends in 0\r\n\r\n here too
           + b"0\r\n\r\n")


def _read(*pieces: bytes) -> list[tuple[int, int, bool]]:
    responses: list[tuple[int, int, bool]] = []
    reader = ResponseReader(lambda *r: responses.append(r))
    for piece in pieces:
        reader.feed(piece)
    return responses


def _bytewise(raw: bytes) -> list[bytes]:
    return [raw[i:i + 1] for i in range(len(raw))]


def test_content_length_whole_and_byte_by_byte():
    assert _read(CONTENT_LENGTH) == [(200, len(CONTENT_LENGTH), True)]
    assert _read(*_bytewise(CONTENT_LENGTH)) == [(200, len(CONTENT_LENGTH), True)]
    # Nothing is reported while a byte of the body is missing.
    assert _read(CONTENT_LENGTH[:-1]) == []


def test_chunked_body_whose_data_ends_like_the_last_chunk():
    assert _read(CHUNKED) == [(200, len(CHUNKED), True)]
    # Split right after the tricky data, then byte by byte: done only at the real end.
    cut = CHUNKED.index(TRICKY_DATA) + len(TRICKY_DATA)
    assert _read(CHUNKED[:cut]) == []
    assert _read(*_bytewise(CHUNKED)) == [(200, len(CHUNKED), True)]


def test_chunked_trailers_are_part_of_the_response():
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
           b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
    assert _read(raw[:-2]) == []
    assert _read(raw) == [(200, len(raw), True)]


def test_pipelined_responses_in_one_read_and_across_reads():
    second = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    raw = CONTENT_LENGTH + CHUNKED + second
    got = _read(raw)
    assert [(status, keep) for status, _, keep in got] == [(200, True), (200, True),
                                                           (503, True)]
    assert sum(size for _, size, _ in got) == len(raw)  # every byte counted once
    # Read boundaries that fall inside the next response: each size is exact.
    cut1, cut2 = len(CONTENT_LENGTH), len(CONTENT_LENGTH) + len(CHUNKED)
    pieces = [raw[:cut1], raw[cut1:cut1 + 7], raw[cut1 + 7:cut2], raw[cut2:]]
    assert _read(*pieces) == [(200, len(CONTENT_LENGTH), True), (200, len(CHUNKED), True),
                              (503, len(second), True)]


def test_interim_and_bodiless_responses():
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n"
    # The 100 is not an answer: its bytes count towards the answer that follows.
    assert _read(interim + no_content) == [(204, len(interim) + len(no_content), True)]


def test_connection_close_and_http_1_0_are_not_kept_alive():
    close = CONTENT_LENGTH.replace(b"content-type", b"Connection: close\r\ncontent-type")
    assert _read(close) == [(200, len(close), False)]
    old = CONTENT_LENGTH.replace(b"HTTP/1.1", b"HTTP/1.0")
    assert _read(old) == [(200, len(old), False)]


def test_body_without_length_ends_at_close():
    reader = ResponseReader(lambda *r: pytest.fail("a body without length never ends early"))
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body")
    assert reader.ends_at_close() and reader.status == 200
    cut = ResponseReader(lambda *r: None)
    cut.feed(CONTENT_LENGTH[:-3])
    assert not cut.ends_at_close()  # a declared length not reached is a failure


def test_malformed_response_raises():
    import httptools

    with pytest.raises(httptools.HttpParserError):
        _read(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")


async def _serve_and_fetch(pieces: list[bytes], gap_s: float = 0.05):
    """Send one request through the issuer's pool to a server that writes `pieces` with
    `gap_s` between them and then closes: the Response (or the exception), the connection,
    and whether the connection went back to the pool for the next request."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(gap_s)
            writer.write(piece)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = ConnectionPool("127.0.0.1", port, time.monotonic_ns)
    try:
        conn = await pool.acquire()
        try:
            response = await asyncio.wait_for(conn.send(b"GET / HTTP/1.1\r\n\r\n"), 5)
        except ConnectionError as exc:
            return exc, conn, conn in pool.idle
        return response, conn, conn in pool.idle
    finally:
        pool.close()
        server.close()
        await server.wait_closed()


def test_connection_waits_for_the_real_end_of_a_chunked_body():
    # The read boundary falls right after the tricky data: the old end check took that
    # for the end of the body and left the rest to corrupt the next answer.
    cut = CHUNKED.index(TRICKY_DATA) + len(TRICKY_DATA)
    response, _, reused = asyncio.run(_serve_and_fetch([CHUNKED[:cut], CHUNKED[cut:]]))
    assert response.status == 200 and response.size == len(CHUNKED) and reused
    assert response.done_ns - response.first_byte_ns >= 40e6  # after the second write


def test_connection_body_until_close_and_malformed_answers():
    raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody"
    response, _, reused = asyncio.run(_serve_and_fetch([raw]))
    assert (response.status, response.size, reused) == (200, len(raw), False)
    cut, _, _ = asyncio.run(_serve_and_fetch([CONTENT_LENGTH[:-5]]))
    assert isinstance(cut, ConnectionError)
    bad, conn, _ = asyncio.run(_serve_and_fetch([b"HTTP/1.1 abc\r\n\r\n"]))
    assert isinstance(bad, ConnectionError) and "malformed" in str(bad) and conn.closed


def test_the_pool_keeps_a_spare_connection_open():
    """A send never waits for a TCP connect when one other request is in flight: taking the
    last idle connection opens a spare, and so does the server closing an idle one."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    accepted: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(ok)
            await writer.drain()

    async def settle(pool: ConnectionPool) -> None:
        for _ in range(200):
            if pool.idle and pool.opening == 0:
                return
            await asyncio.sleep(0.005)

    async def scenario() -> list:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        pool = ConnectionPool("127.0.0.1", server.sockets[0].getsockname()[1],
                              time.monotonic_ns)
        seen = []
        try:
            first = await pool.acquire()          # opened on demand; a spare follows
            await settle(pool)
            seen.append((len(accepted), len(pool.idle)))
            accepted[1].close()                   # the server drops the idle spare
            await asyncio.sleep(0.05)
            await settle(pool)
            seen.append((len(accepted), len(pool.idle), pool.idle[0].closed))
            second = pool.try_acquire()           # a live one at once; another follows
            await settle(pool)
            seen.append((len(accepted), len(pool.idle)))
            answers = await asyncio.gather(first.send(b"GET / HTTP/1.1\r\n\r\n"),
                                           second.send(b"GET / HTTP/1.1\r\n\r\n"))
            seen.append([a.status for a in answers])
            return seen
        finally:
            pool.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) == [(2, 1), (3, 1, False), (4, 1), [200, 200]]


def test_a_request_lost_to_a_closing_keep_alive_connection_is_sent_once_more():
    """The server closes its side (as at its keep-alive timeout) when the second request on
    a connection arrives: that request goes again on a new connection, and is answered. A
    first request on a fresh connection closed the same way is a failure, not resent."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    answers = {"per connection": 1}  # then it closes instead of answering

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = 0
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if answered == answers["per connection"]:
                writer.close()
                return
            answered += 1
            writer.write(ok)
            await writer.drain()

    async def scenario() -> tuple:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        pool = ConnectionPool("127.0.0.1", server.sockets[0].getsockname()[1],
                              time.monotonic_ns)
        try:
            conn = await pool.acquire()  # connection 0; connection 1 is the spare
            first = await asyncio.wait_for(conn.send(b"GET / HTTP/1.1\r\n\r\n"), 5)
            again = await asyncio.wait_for(conn.send(b"GET / HTTP/1.1\r\n\r\n"), 5)
            resent = pool.resent
            answers["per connection"] = 0
            pool.idle.clear()
            fresh = await pool.acquire()
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(fresh.send(b"GET / HTTP/1.1\r\n\r\n"), 5)
            return first.status, again.status, resent, pool.resent
        finally:
            pool.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) == (200, 200, 1, 1)


def test_a_point_counts_its_resent_requests_and_says_so():
    """A server that closes each keep-alive connection at its second request (as at its
    keep-alive timeout): every such request is sent again and answered; the point counts
    them, and its verdict says their latency includes the lost attempt."""
    import re
    import threading

    from inferbench.load.http import resent_note
    from inferbench.load.runner import StopRule, run_point
    from tests.load.test_reference_server import v2_request

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = False
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if answered:
                writer.close()
                return
            answered = True
            writer.write(ok)
            await writer.drain()

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        port = server.sockets[0].getsockname()[1]
        records = run_point([v2_request(f"http://127.0.0.1:{port}")], concurrency=1, seed=1,
                            warmup_s=0.2, rule=StopRule(0.5, 40, 5.0), request_timeout_s=5)
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert set(records.status) == {200}
    # Each send takes the connection the last answer came on, which has answered once: about
    # every request goes twice. The warm-up's are not counted (one may still be on its way).
    assert 0.9 * len(records) <= records.resent_requests <= len(records) + 1
    (note,) = resent_note(records.resent_requests)
    assert note.startswith(f"{records.resent_requests} request(s) sent again")
    assert resent_note(0) == []
