"""Helpers shared by the load-generator benchmarks: the reference server as a process."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from inferbench.servers.reference_server import ReferenceServerProcess  # noqa: E402


@contextlib.contextmanager
def reference_server(service_ms: float, workers: int = 1,
                     *extra: str) -> Iterator[ReferenceServerProcess]:
    server = ReferenceServerProcess(service_ms, workers, *extra)
    try:
        yield server
    finally:
        server.stop()


def v2_body() -> tuple[bytes, dict[str, str]]:
    """The one request every tool sends: a 1x4 FP32 KServe V2 binary infer request."""
    import numpy as np

    from inferbench.load import v2protocol

    return v2protocol.encode_request({"INPUT0": np.zeros((1, 4), np.float32)}, "OUTPUT0")


def lateness(records) -> tuple[float, float, float]:
    """(late > 1 ms %, mean lateness ms, p99 lateness ms) of one point's sends."""
    a = records.arrays()
    late_ms = (a["sent_ns"] - a["scheduled_ns"]) / 1e6
    return (100 * float((late_ms > 1).mean()), float(late_ms.mean()),
            float(np.percentile(late_ms, 99)))


def lateness_cells(rows: list[tuple]) -> str:
    """The table cells of one state's repeats, whose rows carry `lateness` at [2:5]: late
    sends of each repeat, then the mean lateness and p99 lateness averaged over them."""
    lates = " / ".join(f"{r[2]:.2f}" for r in rows)
    return (f"{lates} | {np.mean([r[3] for r in rows]):.3f} | "
            f"{np.mean([r[4] for r in rows]):.3f}")


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def ks_exponential(gaps_s: np.ndarray, rate: float) -> float:
    """Kolmogorov-Smirnov distance of the gaps from the exponential law at `rate`: how far
    arrivals a server logged are from a Poisson process at the asked rate."""
    x = np.sort(gaps_s)
    n = x.size
    cdf = 1 - np.exp(-rate * x)
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


def ks_critical_1pct(n: int) -> float:
    """The KS distance above which n gaps reject the law at the 1 % level (large n)."""
    return 1.63 / math.sqrt(n)
