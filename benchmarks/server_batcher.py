"""The FastAPI server's throughput, side by side: before the batcher existed (the server file
from git history), and now with batching off, and with batching on.

Closed loop: `--concurrency` client threads each send one-sample requests back to back for
`--seconds`; the servers are started in turn, `--rounds` times, so host noise spreads evenly
over them. Run from the repository root:

    .venv/bin/python benchmarks/server_batcher.py --model PATH/model.onnx

The model is any ONNX file with input `input` [batch, ...] and output `output`, e.g. a run's
`model/model.onnx`; `--input-shape` is one sample's shape.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from inferbench.load import v2protocol
from inferbench.netutil import free_port, poll_http_ok

ROOT = Path(__file__).resolve().parent.parent
BEFORE_BATCHER = "647736a"  # last commit whose server had no batcher


def throughput_rps(argv: list[str], model: str, body: bytes, headers: dict, seconds: float,
                   concurrency: int) -> float:
    port = free_port()
    server = subprocess.Popen([*argv, "--model-path", model, "--model-name", "m",
                               "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        poll_http_ok(f"http://127.0.0.1:{port}/v2/models/m/ready", 60)
        url = f"http://127.0.0.1:{port}/v2/models/m/infer"

        def client(_: int) -> int:
            done, end = 0, time.monotonic() + seconds
            while time.monotonic() < end:
                request = urllib.request.Request(url, data=body, headers=headers)
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                done += 1
            return done

        with ThreadPoolExecutor(concurrency) as pool:
            return sum(pool.map(client, range(concurrency))) / seconds
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--input-shape", default="3,32,32")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shape = tuple(int(d) for d in args.input_shape.split(","))
    sample = np.random.default_rng(0).standard_normal((1, *shape), dtype=np.float32)
    body, headers = v2protocol.encode_request({"input": sample}, "output")
    old_source = subprocess.run(
        ["git", "show", f"{BEFORE_BATCHER}:inferbench/servers/onnxruntime_server.py"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        old_server = Path(tmp) / "server_before_batcher.py"
        old_server.write_text(old_source)
        new = [sys.executable, "-m", "inferbench.servers.fastapi_server", "--runtime",
               "onnxruntime"]
        variants = {
            "before the batcher": [sys.executable, str(old_server)],
            "batching off, 1 instance": new,
            "batching on, delay 2000 us, max 8": [*new, "--dynamic-batching",
                                                  "--max-queue-delay-us", "2000",
                                                  "--max-batch-size", "8"],
        }
        results: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, argv in variants.items():
                results[name].append(throughput_rps(argv, args.model, body, headers,
                                                    args.seconds, args.concurrency))
    base = statistics.median(results["before the batcher"])
    print("| server | throughput per round (req/s) | median | vs before |")
    print("|---|---|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {', '.join(f'{v:.0f}' for v in values)} | {median:.0f} | "
              f"{median / base:.2f} |")


if __name__ == "__main__":
    main()
