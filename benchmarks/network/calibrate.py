"""Does the emulated link give each profile's round trip and throughput within 5 %?

For every named profile (inferbench/network/profiles.py), a link process
(inferbench/network/link.py) in front of a TCP echo server in a process of its own:
- round trip: the median of one-byte pings on one open connection, less the median of the
  same pings straight to the server (the host's own path, which the link adds to, as netem
  adds delay to an interface), against the profile's 2 x delay;
- jitter: the standard deviation of those pings, against the profile's (each direction's
  delay uniform within +-jitter: sqrt(2 / 3) x jitter for the round trip);
- throughput down: the server sends n bytes (about 2 s of the profile's downlink) after a
  one-byte request; the rate is n / (time to the last byte - the measured round trip);
- throughput up: the client sends n bytes (about 2 s of the uplink), the server answers one
  byte when it has them all; the same rate.

    .venv/bin/python benchmarks/network/calibrate.py [--pings 300] [--transfer-s 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import threading
import time

from inferbench.network.link import LinkProcess, ping_ms
from inferbench.network.profiles import PROFILES, LinkProfile


def serve_echo(port_out) -> None:
    """The echo server: "b <n>\\n" -> n bytes; "u <n>\\n" + n bytes -> one byte; else echo."""
    server = socket.create_server(("127.0.0.1", 0))
    port_out.send(server.getsockname()[1])

    def answer(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        while data := conn.recv(1 << 20):
            buffer += data
            while buffer:
                if buffer[:2] in (b"b ", b"u "):
                    if b"\n" not in buffer:
                        break
                    head, buffer = buffer.split(b"\n", 1)
                    n = int(head[2:])
                    if head[:1] == b"b":
                        conn.sendall(b"x" * n)
                        continue
                    got, buffer = len(buffer[:n]), buffer[n:]
                    while got < n:  # count, do not keep: n may be hundreds of MB
                        got += len(conn.recv(min(1 << 20, n - got)))
                    conn.sendall(b"k")
                else:
                    conn.sendall(buffer)
                    buffer = b""

    while True:
        conn, _ = server.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _receive(sock: socket.socket, n: int) -> None:
    got = 0
    while got < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed early")
        got += len(chunk)


def throughput_mbps(port: int, n_bytes: int, rtt_ms: float, *, up: bool) -> float:
    with _connect(port) as sock:
        sock.sendall(b"p")
        _receive(sock, 1)
        started = time.perf_counter()
        if up:
            sock.sendall(f"u {n_bytes}\n".encode() + b"y" * n_bytes)
            _receive(sock, 1)
        else:
            sock.sendall(f"b {n_bytes}\n".encode())
            _receive(sock, n_bytes)
        took_s = time.perf_counter() - started - rtt_ms / 1e3
    return n_bytes * 8 / took_s / 1e6


def calibrate(profile: LinkProfile, port: int, pings: int, transfer_s: float,
              loopback_ms: float) -> dict:
    with LinkProcess(profile, ("127.0.0.1", port)) as link:
        rtts = ping_ms(link.port, pings, warmup=5)
        rtt = statistics.median(rtts)  # the whole path: the rates are n / (time - this)
        down_bytes = int(min(profile.bandwidth_mbps * 1e6 / 8 * transfer_s, 200e6))
        up_bytes = int(min(profile.uplink_mbps * 1e6 / 8 * transfer_s, 200e6))
        down = throughput_mbps(link.port, down_bytes, rtt, up=False)
        up = throughput_mbps(link.port, up_bytes, rtt, up=True)
        return {"profile": profile, "added_rtt_ms": rtt - loopback_ms,
                "rtt_sd_ms": statistics.pstdev(rtts), "down_mbps": down, "up_mbps": up,
                "own_rtt_ms": link.own_rtt_ms}


def _pct(measured: float, target: float) -> str:
    return f"{100 * (measured / target - 1):+.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--transfer-s", type=float, default=2.0)
    args = parser.parse_args()
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve_echo, args=(send,), daemon=True)
    server.start()
    port = receive.recv()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    loopback = statistics.median(ping_ms(port, args.pings, warmup=5))
    print(f"loopback round trip without the link: {loopback:.3f} ms (median of "
          f"{args.pings})\n")
    print(__doc__.splitlines()[0])
    print("| profile | added round trip: target / measured (ms) | error % | jitter sd: target / "
          "measured (ms) | down: target / measured (Mbit/s) | error % | up: target / "
          "measured (Mbit/s) | error % | relay's own round trip (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for profile in PROFILES.values():
        r = calibrate(profile, port, args.pings, args.transfer_s, loopback)
        jitter_sd = (2 / 3) ** 0.5 * profile.jitter_ms
        print(f"| {profile.name} | {profile.rtt_ms:g} / {r['added_rtt_ms']:.3f} | "
              f"{_pct(r['added_rtt_ms'], profile.rtt_ms)} | "
              f"{jitter_sd:.2f} / {r['rtt_sd_ms']:.2f} | "
              f"{profile.bandwidth_mbps:g} / {r['down_mbps']:.1f} | "
              f"{_pct(r['down_mbps'], profile.bandwidth_mbps)} | {profile.uplink_mbps:g} / "
              f"{r['up_mbps']:.1f} | {_pct(r['up_mbps'], profile.uplink_mbps)} | "
              f"{r['own_rtt_ms']:.3f} |", flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    server.terminate()


if __name__ == "__main__":
    main()
