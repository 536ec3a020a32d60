"""A calibration target: an M/D/c queue behind KServe V2 HTTP, logging every request.

Each infer request joins one FIFO queue served by `workers` identical workers; each takes
exactly `service_ms`. Under Poisson load this is an M/D/c queue whose outcome is known
(Lindley's recursion on the logged arrivals; the Pollaczek-Khinchine mean for c = 1), so a
load generator can be checked against queueing theory instead of against another tool.

How the queue is served: the workers are kept as the times they become free (a heap). When a
request has fully arrived, its start is max(arrival, earliest free worker) and its completion
start + service; the answer is written at that completion time. Writing at a computed time,
rather than burning CPU in worker threads, is what makes the service time deterministic on a
2-core host shared with the load generator: threads spinning for the GIL would steal the
event loop's time and blur the arrival timestamps. The event loop (on select(), whose
timers have microsecond resolution) sleeps until shortly before each completion and spins
the rest; each write's own lateness is logged, so a user sees how exact the server was.

Every request is logged: arrival, start, completion (scheduled) and written (actual) times
in ns on the wall clock (`time.time_ns()` origin, monotonic in between), readable live at
`GET /log` (CSV), cleared with `DELETE /log`, and written to `--log` on shutdown.

With `--stall-at-s T --stall-ms 500` the server stops serving once, T seconds after its first
request, for 500 ms (work in progress and queued requests wait): the coordinated-omission
test case.

Run: python -m inferbench.servers.reference_server --service-ms 10 --workers 1 --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inferbench.load import v2protocol

MODEL_NAME = "reference"
INPUT_NAME, OUTPUT_NAME = "INPUT0", "OUTPUT0"
LOG_COLUMNS = ("seq", "arrival_ns", "start_ns", "completion_ns", "written_ns", "bytes_in")
# The server runs on a select() event loop, whose timers have microsecond resolution (epoll's
# have milliseconds), so it sleeps until this long before a completion and spins only the
# rest: little CPU taken from a load generator sharing the host.
_SPIN_NS = 200_000
_MAX_FD = 1000  # select() watches file descriptors below 1024 only


class WallClock:
    """Wall-clock ns that never jump: wall origin, perf_counter increments (as the client)."""

    def __init__(self) -> None:
        self._wall0 = time.time_ns()
        self._mono0 = time.perf_counter_ns()

    def now(self) -> int:
        return self._wall0 + (time.perf_counter_ns() - self._mono0)


@dataclass
class QueueModel:
    """FIFO M/D/c bookkeeping: the times the `workers` become free, and the log."""

    service_ns: int
    workers: int
    stall_at_ns: int | None = None  # after the first arrival
    stall_ns: int = 0
    free_ns: list[int] = field(default_factory=list)
    log: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    first_arrival_ns: int | None = None
    _seq: int = 0

    def __post_init__(self) -> None:
        self.free_ns = [0] * self.workers

    def admit(self, arrival_ns: int) -> tuple[int, int, int]:
        """(seq, start, completion) of a request that arrived at `arrival_ns`."""
        if self.first_arrival_ns is None:
            self.first_arrival_ns = arrival_ns
        if self.stall_at_ns is not None and arrival_ns >= self.first_arrival_ns + \
                self.stall_at_ns:
            # The stall begins now: every worker is held for stall_ns from here (or from the
            # end of its current job, which is then late by the stall as well).
            stall_from = self.first_arrival_ns + self.stall_at_ns
            self.free_ns = [max(f, stall_from) + self.stall_ns for f in self.free_ns]
            heapq.heapify(self.free_ns)
            self.stall_at_ns = None
        start = max(arrival_ns, heapq.heappop(self.free_ns))
        done = start + self.service_ns
        heapq.heappush(self.free_ns, done)
        self._seq += 1
        return self._seq, start, done

    def csv(self) -> str:
        rows = [",".join(LOG_COLUMNS)]
        rows += [",".join(map(str, r)) for r in sorted(self.log)]
        return "\n".join(rows) + "\n"


def parse_log(text: str) -> dict[str, np.ndarray]:
    """The CSV of `GET /log` as int64 columns, ordered by seq (arrival order)."""
    lines = [ln for ln in text.strip().splitlines()[1:] if ln]
    data = np.array([[int(x) for x in ln.split(",")] for ln in lines], dtype=np.int64) \
        .reshape(-1, len(LOG_COLUMNS))
    return {name: data[:, i] for i, name in enumerate(LOG_COLUMNS)}


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}",
             "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _json(status: int, obj: object) -> bytes:
    return _response(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})


class _HttpConnection(asyncio.Protocol):
    """HTTP/1.1 keep-alive; requests on one connection answered in order."""

    def __init__(self, server: ReferenceServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() >= _MAX_FD:
            transport.close()  # before the loop registers it: select() cannot watch it
            return
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = self.server.clock.now()
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4:total])
            del self.buffer[:total]
            method, _, rest = head[0].partition(" ")
            path = rest.split(" ", 1)[0]
            self.server.handle(self, method, path, headers, body, now)

    def write(self, raw: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(raw)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class ReferenceServer:
    def __init__(self, service_ms: float, workers: int, *, stall_at_s: float | None = None,
                 stall_ms: float = 500.0, features: int = 4) -> None:
        if service_ms < 0 or workers < 1:
            raise ValueError(f"need service_ms >= 0 and workers >= 1, got {service_ms!r}, "
                             f"{workers!r}")
        self.clock = WallClock()
        self.model = QueueModel(int(round(service_ms * 1e6)), workers,
                                None if stall_at_s is None else int(stall_at_s * 1e9),
                                int(stall_ms * 1e6))
        self.features = features
        self._answers: dict[tuple[int, bool], bytes] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- HTTP routes -------------------------------------------------------------------
    def handle(self, conn: _HttpConnection, method: str, path: str, headers: dict[str, str],
               body: bytes, now_ns: int) -> None:
        if method == "POST" and path == f"/v2/models/{MODEL_NAME}/infer":
            self._infer(conn, headers, body, now_ns)
        elif method == "POST" and path in (f"/v1/models/{MODEL_NAME}:predict", "/predict"):
            self._other(conn, path, headers, body, now_ns)
        elif method == "GET" and path in ("/v2/health/ready", "/v2/health/live",
                                          f"/v2/models/{MODEL_NAME}/ready"):
            conn.write(_json(200, {}))
        elif method == "GET" and path == f"/v2/models/{MODEL_NAME}":
            conn.write(_json(200, {
                "name": MODEL_NAME, "platform": "inferbench-reference",
                "inputs": [{"name": INPUT_NAME, "datatype": "FP32",
                            "shape": [-1, self.features]}],
                "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, 1]}]}))
        elif method == "GET" and path == f"/v2/models/{MODEL_NAME}/config":
            # Triton's model-configuration extension: what perf_analyzer reads first.
            conn.write(_json(200, {
                "name": MODEL_NAME, "backend": "inferbench-reference", "max_batch_size": 0,
                "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32",
                           "dims": [-1, self.features]}],
                "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [-1, 1]}]}))
        elif method == "GET" and path == "/v2":
            conn.write(_json(200, {"name": "inferbench-reference", "version": "1",
                                   "extensions": []}))
        elif method == "GET" and path == "/log":
            conn.write(_response(200, self.model.csv().encode(), {"Content-Type": "text/csv"}))
        elif method == "DELETE" and path == "/log":
            self.model.log.clear()
            conn.write(_json(200, {}))
        else:
            conn.write(_json(404, {"error": f"no route {method} {path}"}))

    def _answer(self, batch: int, binary: bool) -> bytes:
        key = (batch, binary)
        if key not in self._answers:
            body, headers = v2protocol.encode_response(
                MODEL_NAME, {OUTPUT_NAME: np.zeros((batch, 1), np.float32)}, binary)
            self._answers[key] = _response(200, body, headers)
        return self._answers[key]

    def _infer(self, conn: _HttpConnection, headers: dict[str, str], body: bytes,
               arrival_ns: int) -> None:
        try:
            header_length = headers.get(v2protocol.HEADER_LENGTH.lower())
            head = json.loads(body[:int(header_length)] if header_length else body)
            batch = int(head["inputs"][0]["shape"][0])
            binary = any((o.get("parameters") or {}).get("binary_data")
                         for o in head.get("outputs") or [])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            conn.write(_json(400, {"error": f"not a KServe V2 infer request: {exc}"}))
            return
        seq, start, done = self.model.admit(arrival_ns)
        raw = self._answer(batch, binary)
        assert self.loop is not None
        wake = done - _SPIN_NS - self.clock.now()
        self.loop.call_later(max(wake, 0) / 1e9, self._complete, conn, raw, seq, arrival_ns,
                             start, done, len(body))

    def _other(self, conn: _HttpConnection, path: str, headers: dict[str, str], body: bytes,
               arrival_ns: int) -> None:
        """TF-Serving-style REST (`:predict`) and generic HTTP (`/predict`, JSON or raw bytes)
        through the same queue, so every protocol client can be checked against it."""
        if path.endswith(":predict"):
            try:
                n = len(json.loads(body)["instances"])
            except (ValueError, KeyError, TypeError) as exc:
                conn.write(_json(400, {"error": f"not a predict request: {exc}"}))
                return
            raw = _json(200, {"predictions": [[0.0]] * n})
        elif headers.get("content-type", "").startswith("application/json"):
            raw = _json(200, {"outputs": [[0.0]]})
        else:
            raw = _response(200, b"\0" * 4, {"Content-Type": "application/octet-stream"})
        seq, start, done = self.model.admit(arrival_ns)
        assert self.loop is not None
        wake = done - _SPIN_NS - self.clock.now()
        self.loop.call_later(max(wake, 0) / 1e9, self._complete, conn, raw, seq, arrival_ns,
                             start, done, len(body))

    def _complete(self, conn: _HttpConnection, raw: bytes, seq: int, arrival_ns: int,
                  start_ns: int, done_ns: int, size: int) -> None:
        while self.clock.now() < done_ns:
            pass  # the last 0.2 ms: a wake-up is not more precise than that
        written = self.clock.now()
        conn.write(raw)
        self.model.log.append((seq, arrival_ns, start_ns, done_ns, written, size))

    # -- lifecycle ---------------------------------------------------------------------
    async def serve(self, host: str, port: int, ready: asyncio.Future | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        server = await self.loop.create_server(lambda: _HttpConnection(self), host, port)
        bound = server.sockets[0].getsockname()[1]
        stop = self.loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
            except (RuntimeError, ValueError):  # not the main thread: the caller stops us
                pass
        print(f"reference server listening on http://{host}:{bound} (service "
              f"{self.model.service_ns / 1e6:g} ms, {self.model.workers} worker(s))", flush=True)
        if ready is not None:
            ready.set_result(bound)
        async with server:
            await stop


class ReferenceServerProcess:
    """The reference server started as its own process on a free port, and its HTTP log
    interface: what tests and benchmarks/loadgen drive their tools at."""

    def __init__(self, service_ms: float, workers: int = 1, *extra: str,
                 ready_timeout_s: float = 30.0) -> None:
        from inferbench.netutil import free_port, poll_http_ok

        port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inferbench.servers.reference_server", "--port", str(port),
             "--service-ms", str(service_ms), "--workers", str(workers), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        self.infer_url = f"{self.url}/v2/models/reference/infer"
        if not poll_http_ok(f"{self.url}/v2/health/ready", ready_timeout_s):
            self.stop()
            raise RuntimeError(f"reference server did not start within {ready_timeout_s:g} s")

    def log(self) -> dict[str, np.ndarray]:
        with urllib.request.urlopen(f"{self.url}/log", timeout=30) as response:
            return parse_log(response.read().decode())

    def clear_log(self) -> None:
        req = urllib.request.Request(f"{self.url}/log", method="DELETE")
        urllib.request.urlopen(req, timeout=10).close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--service-ms", type=float, required=True,
                        help="deterministic service time of every request, ms")
    parser.add_argument("--workers", type=int, default=1, help="c, the number of workers")
    parser.add_argument("--stall-at-s", type=float, default=None,
                        help="stall once, this many seconds after the first request")
    parser.add_argument("--stall-ms", type=float, default=500.0, help="length of that stall")
    parser.add_argument("--log", type=Path, default=None, help="write the request log (CSV) "
                        "here on shutdown")
    args = parser.parse_args(argv)
    server = ReferenceServer(args.service_ms, args.workers, stall_at_s=args.stall_at_s,
                             stall_ms=args.stall_ms)
    try:
        with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(
                selectors.SelectSelector())) as runner:
            runner.run(server.serve(args.host, args.port))
    finally:
        if args.log is not None:
            args.log.write_text(server.model.csv())
    return 0


if __name__ == "__main__":
    sys.exit(main())
