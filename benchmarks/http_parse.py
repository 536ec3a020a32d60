"""What does framing a response cost the issuer, hand-rolled parser vs llhttp (httptools)?

Side by side in one process, alternating: the issuer's HTTP/1.1 connection as it was before
httptools (`inferbench/load/http.py` at commit OLD_COMMIT, loaded from git history into a
temporary module) and as it is now, each fed the same KServe V2 responses, split into
reads as a socket would hand them over. Prints ns per response (median of the repeats).

With --e2e it also drives the reference server (service time 0, one worker) with the whole
issuer, old and new connection classes alternating, at 1000 and 4000 req/s (open-loop
Poisson, same seeds for both), and prints late sends (> 1 ms) and client CPU per request.

    .venv/bin/python benchmarks/http_parse.py [--repeats 7] [--e2e --seconds 5 --rounds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from inferbench.load import http as new_http
from inferbench.load import runner, v2protocol
from inferbench.servers.reference_server import _response

# The last commit whose http.py had the hand-rolled parser.
OLD_COMMIT = "f6bb9a1"
ROOT = Path(__file__).resolve().parents[1]


def load_old_http() -> ModuleType:
    """inferbench/load/http.py as of OLD_COMMIT, imported from a temporary file."""
    try:
        source = subprocess.run(
            ["git", "show", f"{OLD_COMMIT}:inferbench/load/http.py"], cwd=ROOT,
            capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"needs the git history (commit {OLD_COMMIT}) for the old parser: {exc}")
    path = Path(tempfile.mkdtemp()) / "old_http.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_http", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _v2(batch: int, features: int, binary: bool, extra: dict[str, str] | None = None,
        chunked: bool = False) -> bytes:
    outputs = {"OUTPUT__0": np.linspace(0, 1, batch * features, dtype=np.float32)
               .reshape(batch, features)}
    body, headers = v2protocol.encode_response("model", outputs, binary, request_id="42")
    headers = {**(extra or {}), **headers}
    if not chunked:
        return _response(200, body, headers)
    # A streaming server's answer: the body in 2 chunks, no Content-Length.
    half = len(body) // 2
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])) \
        + b"0\r\n\r\n"


UVICORN = {"date": "Wed, 02 Dec 2026 16:00:00 GMT", "server": "uvicorn"}


def responses() -> dict[str, list[bytes]]:
    """Each case: the reads one response arrives in (64 KiB socket reads)."""
    cases = {
        "reference server, binary, batch 1 x 1": _v2(1, 1, True),
        "Triton-like binary, batch 8 x 10": _v2(8, 10, True),
        "uvicorn JSON, batch 8 x 10": _v2(8, 10, False, UVICORN),
        "uvicorn JSON, chunked, batch 8 x 10": _v2(8, 10, False, UVICORN, chunked=True),
        "binary, batch 64 x 4096 (1 MiB, 17 reads)": _v2(64, 4096, True),
    }
    read = 65536
    return {name: [raw[i:i + read] for i in range(0, len(raw), read)]
            for name, raw in cases.items()}


class _Pool:
    """What a Connection asks of its pool while reading responses."""

    loop = None
    clock = staticmethod(time.monotonic_ns)

    def release(self, conn: object) -> None:
        pass

    def forget(self, conn: object) -> None:
        pass


def time_parse(module: ModuleType, reads: list[bytes], n: int) -> float:
    """ns per response: one keep-alive connection reading n responses."""
    conn = module.Connection(_Pool())
    feed = conn.data_received
    t0 = time.perf_counter_ns()
    for _ in range(n):
        for piece in reads:
            feed(piece)
    return (time.perf_counter_ns() - t0) / n


def check_same_answers(old: ModuleType, reads: list[bytes]) -> None:
    """Both parsers see one complete response of the same size (or the bench is void)."""
    sizes = []
    for module in (old, new_http):
        got: list[int] = []
        pool = _Pool()
        pool.release = lambda conn, got=got: got.append(1)  # type: ignore[method-assign]
        conn = module.Connection(pool)
        for piece in reads:
            conn.data_received(piece)
        sizes.append(got)
    assert sizes[0] == sizes[1] == [1], sizes


def parse_table(old: ModuleType, repeats: int) -> None:
    print("| response (KServe V2) | bytes | old (ns/response) | httptools (ns/response) "
          "| new / old |")
    print("|---|---:|---:|---:|---:|")
    for name, reads in responses().items():
        check_same_answers(old, reads)
        size = sum(map(len, reads))
        n = 200 if size > 100_000 else 20_000
        timings: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(repeats):
            for label, module in (("old", old), ("new", new_http)):
                timings[label].append(time_parse(module, reads, n))
        o, w = statistics.median(timings["old"]), statistics.median(timings["new"])
        print(f"| {name} | {size} | {o:,.0f} | {w:,.0f} | {w / o:.2f} |")


def e2e_table(old: ModuleType, seconds: float, rounds: int) -> None:
    from inferbench.servers.reference_server import ReferenceServerProcess

    server = ReferenceServerProcess(0.0, 1)
    body, headers = v2protocol.encode_request({"INPUT0": np.zeros((1, 4), np.float32)},
                                              "OUTPUT0")
    requests = [runner.Request(server.infer_url, body, headers)]
    rows: dict[tuple[int, str], list[tuple[float, float, int, int]]] = {}
    try:
        for rate in (1000, 4000):
            for r in range(rounds):
                order = [("old", old), ("new", new_http)]
                for label, module in order if r % 2 == 0 else order[::-1]:
                    runner.ConnectionPool = module.ConnectionPool  # type: ignore[misc]
                    records = runner.run_point(
                        requests, rate_rps=rate, seed=r + 1, warmup_s=1.0,
                        rule=runner.StopRule(seconds, 0, seconds), request_timeout_s=5.0)
                    a = records.arrays()
                    late = (a["sent_ns"] - a["scheduled_ns"]) > 1_000_000
                    n = len(a["status"])
                    rows.setdefault((rate, label), []).append(
                        (100 * float(late.mean()), 1e6 * records.client_cpu_s / max(n, 1), n,
                         int((a["status"] != 200).sum())))
    finally:
        runner.ConnectionPool = new_http.ConnectionPool  # type: ignore[misc]
        server.stop()
    print("| rate (req/s) | parser | late > 1 ms (%): median (rounds) "
          "| client CPU (us/request): median (rounds) | requests | failed |")
    print("|---:|---|---|---|---:|---:|")
    for (rate, label), runs in rows.items():
        late = [x[0] for x in runs]
        cpu = [x[1] for x in runs]
        print(f"| {rate} | {'old' if label == 'old' else 'httptools'} "
              f"| {statistics.median(late):.1f} ({', '.join(f'{x:.1f}' for x in late)}) "
              f"| {statistics.median(cpu):.0f} ({', '.join(f'{x:.0f}' for x in cpu)}) "
              f"| {sum(x[2] for x in runs)} | {sum(x[3] for x in runs)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--e2e", action="store_true", help="also run the issuer against the "
                        "reference server, old and new connection classes")
    parser.add_argument("--seconds", type=float, default=5.0, help="per e2e point")
    parser.add_argument("--rounds", type=int, default=2, help="e2e rounds per rate, "
                        "alternating which parser goes first")
    args = parser.parse_args()
    old = load_old_http()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    parse_table(old, args.repeats)
    if args.e2e:
        print()
        e2e_table(old, args.seconds, args.rounds)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
