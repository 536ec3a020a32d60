"""An emulated network link: a TCP relay that gives the path from the load generator to the
server a profile's bandwidth, delay and jitter.

Why a relay: the kernels here have no netem, and the serve and load tasks may run in
containers without NET_ADMIN, so the link is built in user space where every task can run
it. The client connects to the relay instead of the server; per direction the relay is
- a bottleneck: one FIFO shared by every connection, which sends a chunk of n bytes in
  n * 8 / bandwidth seconds after the chunk before it (so concurrent requests queue for
  the link as they would for a real one), then
- a delay line: the chunk is handed on `delay +- jitter` after it left the bottleneck,
  never before an earlier chunk of the same connection (TCP delivers bytes in order).
A new connection's first bytes wait one round trip, the TCP handshake a real path pays.

What it does not emulate, and says so: packet loss (profiles with loss are refused), and
TCP's own reaction to a long round trip (the congestion window grows over the relay's
local hops, so slow start on a long path is not reproduced); the bottleneck buffer is
unbounded, so overload shows as queueing delay, never as drops.

Run it as a process (`LinkProcess`): its threads then do not compete with the load
generator for one interpreter lock.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from inferbench.errors import InferBenchError
from inferbench.network.profiles import LinkProfile

CHUNK_BYTES = 256 * 1024
# Sleep until this close to a chunk's time, then yield in a tight loop: a timed wait
# alone oversleeps by 50-100 us, which is a whole LAN profile's delay.
SPIN_S = 0.0002
CALIBRATION_DELAY_MS = 2.0
# Where the relay's own round trip (measured at its start, taken off its delay lines) is
# this share of the profile's or more, its variation from start to start (tens of
# microseconds on a busy host) is a large error on the profile's round trip: the result
# says the link is emulated only roughly. Likewise for a bandwidth this high, which the
# relay's copying in Python approaches on a small host.
ROUGH_RTT_SHARE = 0.25
ROUGH_MBPS = 500.0


@dataclass
class _Flow:
    """One connection's bytes in one direction."""

    out: socket.socket
    not_before: float = 0.0       # the handshake's round trip, for the first bytes
    last_delivery: float = 0.0    # in-order delivery within the connection
    # The message crossing now: bytes that arrived while earlier ones were still on the
    # link belong to it (a request, or a response; HTTP/1.1 and gRPC clients here send
    # the next only after the answer). None: no message yet.
    message_arrived: float | None = None
    message_bytes: int = 0


@dataclass(order=True)
class _Chunk:
    due: float
    seq: int
    flow: _Flow = field(compare=False)
    data: bytes = field(compare=False)  # b"" closes the flow's write side


class Direction:
    """One direction of the link: a shared FIFO bottleneck followed by a delay line."""

    def __init__(self, mbps: float, delay_ms: float, jitter_ms: float, seed: int) -> None:
        self._seconds_per_byte = 8 / (mbps * 1e6)
        self._delay_s, self._jitter_s = delay_ms / 1e3, jitter_ms / 1e3
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._heap: list[_Chunk] = []
        self._link_free_at = 0.0
        self._seq = 0
        # Messages that crossed, and how much longer they took than on an idle link (the
        # delay plus their bytes at the bandwidth): waiting behind other messages for the
        # bottleneck, and a new connection's handshake.
        self.messages = 0
        self.wait_s = 0.0
        threading.Thread(target=self._deliver_forever, daemon=True).start()

    def counts(self) -> dict[str, float]:
        """Messages that crossed so far, and their total wait (s)."""
        with self._cond:
            return {"messages": self.messages, "wait_s": self.wait_s}

    def _count_message(self, flow: _Flow) -> None:
        """Close the flow's message: its last byte is due at `flow.last_delivery`."""
        if flow.message_arrived is not None and flow.message_bytes:
            idle_link_s = self._delay_s + flow.message_bytes * self._seconds_per_byte
            self.messages += 1
            self.wait_s += max(0.0, flow.last_delivery - flow.message_arrived - idle_link_s)
        flow.message_arrived, flow.message_bytes = None, 0

    def submit(self, flow: _Flow, data: bytes, arrived: float) -> None:
        """Give the link one chunk. A chunk due within the spin time on an idle direction
        is delivered by the calling reader itself: a hand-over to the delivery thread
        costs about 50 us, more than a LAN's whole delay."""
        with self._cond:
            if not data or arrived >= flow.last_delivery:  # the flow's last message is over
                self._count_message(flow)
            if data and flow.message_arrived is None:
                flow.message_arrived = arrived
            flow.message_bytes += len(data)
            start = max(arrived, flow.not_before, self._link_free_at)
            self._link_free_at = start + len(data) * self._seconds_per_byte
            jitter = self._rng.uniform(-self._jitter_s, self._jitter_s) if self._jitter_s else 0
            due = max(self._link_free_at + max(0.0, self._delay_s + jitter), flow.last_delivery)
            flow.last_delivery = due
            self._seq += 1
            chunk = _Chunk(due, self._seq, flow, data)
            inline = not self._heap and due - time.monotonic() <= SPIN_S
            if not inline:
                heapq.heappush(self._heap, chunk)
                self._cond.notify()
        if inline:
            _deliver(chunk)

    def _next_due(self) -> _Chunk:
        with self._cond:
            while True:
                now = time.monotonic()
                if self._heap and self._heap[0].due - now <= SPIN_S:
                    return heapq.heappop(self._heap)
                self._cond.wait(None if not self._heap else self._heap[0].due - now - SPIN_S)

    def _deliver_forever(self) -> None:
        while True:
            _deliver(self._next_due())


def _deliver(chunk: _Chunk) -> None:
    """Hand a chunk on at its due time (spinning the last moments away)."""
    while time.monotonic() < chunk.due:
        pass
    try:
        if chunk.data:
            chunk.flow.out.sendall(chunk.data)
        else:
            chunk.flow.out.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the other end went away; its reader closes the connection


class Link:
    """The relay: listens on `listen`, forwards every connection to `target` through the
    two directions of the profile."""

    def __init__(self, profile: LinkProfile, target: tuple[str, int],
                 listen: tuple[str, int] = ("127.0.0.1", 0), seed: int = 0,
                 own_rtt_ms: float = 0.0) -> None:
        """`own_rtt_ms`: what the relay adds to a round trip by itself
        (`measure_own_rtt_ms`); the delay lines are shortened by half of it each way, so
        the link adds the profile's round trip to the host's own path, no more."""
        self.profile, self.target = profile, target
        delay_ms = max(0.0, profile.delay_ms - own_rtt_ms / 2)
        self.up = Direction(profile.uplink_mbps, delay_ms, profile.jitter_ms, seed)
        self.down = Direction(profile.bandwidth_mbps, delay_ms, profile.jitter_ms, seed + 1)
        self._server = socket.create_server(listen, backlog=1024)
        self.port = self._server.getsockname()[1]
        self._control = socket.create_server((listen[0], 0))
        self.control_port = self._control.getsockname()[1]
        threading.Thread(target=self._answer_counters, daemon=True).start()

    def counters(self) -> dict:
        """Cumulative: messages that crossed each way and their total wait (s)."""
        return {f"{way}_{name}": value
                for way, direction in (("up", self.up), ("down", self.down))
                for name, value in direction.counts().items()}

    def _answer_counters(self) -> None:
        """The control port: each connection gets the counters as one JSON line."""
        while True:
            conn, _ = self._control.accept()
            with conn:
                conn.sendall(json.dumps(self.counters()).encode() + b"\n")

    def serve_forever(self) -> None:
        while True:
            client, _ = self._server.accept()
            accepted = time.monotonic()
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()  # the client sees the refusal as the server's
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rtt_s = self.profile.rtt_ms / 1e3
            up = _Flow(upstream, not_before=accepted + rtt_s)
            down = _Flow(client)
            for source, direction, flow in ((client, self.up, up), (upstream, self.down, down)):
                threading.Thread(target=_pump, args=(source, direction, flow),
                                 daemon=True).start()


def measure_own_rtt_ms(profile: LinkProfile, pings: int = 200) -> float:
    """What the relay itself adds to a round trip: the median round trip of a one-byte ping
    through a relay of the profile's delay (at most CALIBRATION_DELAY_MS, to keep this
    short) to an echo in this process, less that delay's round trip and less the same
    ping's median straight to the echo. The link adds its profile's round trip to the
    host's own path, as netem adds delay to an interface's. A short delay is served inline
    and a long one by the delivery thread (`Direction.submit`): the calibration takes the
    path the link will take."""
    echo = socket.create_server(("127.0.0.1", 0))

    def answer(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(64):
            conn.sendall(data)
        conn.close()

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed when the calibration is done
            while True:
                threading.Thread(target=answer, args=(echo.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    delay_ms = min(profile.delay_ms, CALIBRATION_DELAY_MS)
    probe = LinkProfile("probe", delay_ms=delay_ms, jitter_ms=0.0, bandwidth_mbps=1e6,
                        uplink_mbps=1e6)
    relay = Link(probe, echo.getsockname())
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    through = statistics.median(ping_ms(relay.port, pings))
    straight = statistics.median(ping_ms(echo.getsockname()[1], pings))
    echo.close()
    return max(0.0, through - 2 * delay_ms - straight)


def ping_ms(port: int, count: int, warmup: int = 20) -> list[float]:
    """Round trips (ms) of `count` one-byte pings to an echo on `port`, on one connection,
    after `warmup` pings (the first pay the handshake and warm-up) not kept."""
    rtts = []
    with socket.create_connection(("127.0.0.1", port)) as ping:
        ping.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(warmup + count):
            started = time.perf_counter()
            ping.sendall(b"p")
            if not ping.recv(64):
                raise ConnectionError("the echo closed the connection")
            rtts.append((time.perf_counter() - started) * 1e3)
    return rtts[warmup:]


def _pump(source: socket.socket, direction: Direction, flow: _Flow) -> None:
    """Read what one end sends and give it to the link, until that end closes."""
    try:
        while data := source.recv(CHUNK_BYTES):
            direction.submit(flow, data, time.monotonic())
    except OSError:
        pass
    direction.submit(flow, b"", time.monotonic())


def link_wait_ms(before: dict | None, after: dict) -> dict[str, float | None]:
    """A point's mean time per request spent waiting for the link, both ways together
    (Link.counters between two readings: each way's wait per message crossing it): behind
    other messages for the bottleneck, and new connections' handshakes. Per message, not
    per answered request, so requests the client gave up on count too. None without a
    reading before, or with no message."""
    if before is None:
        return {"link_wait_ms": None}
    means = []
    for way in ("up", "down"):
        messages = after[f"{way}_messages"] - before[f"{way}_messages"]
        if messages <= 0:
            return {"link_wait_ms": None}
        means.append((after[f"{way}_wait_s"] - before[f"{way}_wait_s"]) / messages)
    return {"link_wait_ms": sum(means) * 1e3}


def host_port(url: str) -> tuple[str, int]:
    """The host and port a URL ("http://h:p/...", or gRPC's bare "h:p") is aimed at."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"//{url}")
    if parts.hostname is None or parts.port is None:
        raise InferBenchError(f"cannot route {url!r} through the emulated link: it names no "
                              "host and port")
    return parts.hostname, parts.port


class LinkProcess:
    """The link in a process of its own, for the duration of a `with` block:
    `with LinkProcess(profile, ("127.0.0.1", 8000)) as link: ... link.port ...`."""

    def __init__(self, profile: LinkProfile, target: tuple[str, int], seed: int = 0) -> None:
        self.profile, self.target, self.seed = profile, target, seed
        self.port: int | None = None
        self.own_rtt_ms: float | None = None  # taken off the delay lines (Link)
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> LinkProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "inferbench.network.link", "--target",
             f"{self.target[0]}:{self.target[1]}", "--seed", str(self.seed),
             "--profile", json.dumps(self.profile.as_dict())],
            stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if not line.startswith("listening "):
            self._proc.kill()
            raise InferBenchError(f"the emulated link did not start (it said {line!r})")
        words = line.split()
        self.port, self.own_rtt_ms = int(words[1]), float(words[3])
        self._control_port = int(words[5])
        return self

    def counters(self) -> dict | None:
        """The link's cumulative counters (Link.counters), or None if it does not answer."""
        try:
            with socket.create_connection(("127.0.0.1", self._control_port), timeout=5) as c:
                return json.loads(c.makefile().readline())
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def url_for(self, url: str) -> str:
        """`url` (aimed at the target) aimed at the link instead."""
        host, port = self.target
        if host_port(url) != self.target:
            raise InferBenchError(f"{url!r} is not aimed at {host}:{port}")
        return url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}", 1)

    def describe(self) -> dict:
        """What a result records of the link it was measured through."""
        return {**self.profile.as_dict(), "relay_own_rtt_ms": self.own_rtt_ms,
                "emulation_note": self.emulation_note()}

    def emulation_note(self) -> str | None:
        """Why this link's figures are only roughly emulated here; None where the relay's
        own costs are small beside them."""
        rough = []
        if self.own_rtt_ms is not None and (self.own_rtt_ms
                                            >= ROUGH_RTT_SHARE * self.profile.rtt_ms):
            rough.append(f"the relay's own round trip ({self.own_rtt_ms:.3f} ms, which "
                         "varies by tens of microseconds from start to start) is "
                         f"{self.own_rtt_ms / self.profile.rtt_ms:.0%} of the profile's "
                         f"{self.profile.rtt_ms:g} ms")
        fastest = max(self.profile.bandwidth_mbps, self.profile.uplink_mbps)
        if fastest >= ROUGH_MBPS:
            rough.append(f"{fastest:g} Mbit/s approaches the relay's own copy rate")
        if not rough:
            return None
        return ("emulated roughly: " + "; ".join(rough)
                + " (measure it: benchmarks/network/calibrate.py)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An emulated network link (a TCP relay).")
    parser.add_argument("--target", required=True, help="host:port of the server")
    parser.add_argument("--profile", required=True, help="the LinkProfile as JSON")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    host, port = args.target.rsplit(":", 1)
    lhost, lport = args.listen.rsplit(":", 1)
    # Hand the interpreter lock between the relay's threads promptly: a chunk's delivery
    # must not wait out another thread's 5 ms slice.
    sys.setswitchinterval(0.0001)
    profile = LinkProfile(**json.loads(args.profile))
    own_rtt_ms = measure_own_rtt_ms(profile)
    link = Link(profile, (host, int(port)),
                (lhost, int(lport)), args.seed, own_rtt_ms)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"listening {link.port} own_rtt_ms {own_rtt_ms:.4f} control {link.control_port}",
          flush=True)
    link.serve_forever()


if __name__ == "__main__":
    main()
