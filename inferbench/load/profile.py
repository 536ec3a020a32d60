"""Light profiling of a running endpoint: closed-loop levels for the queueing prediction.

Level k keeps exactly k requests in flight for a few seconds (no random arrivals); levels
1..c measure the service under each degree of parallelism, levels c + 1 and c + 2 the
server's capacity (its workers never idle: two beyond c, so that one request's time
outside the server, or a jittery hand-over, does not leave a worker waiting).
analysis/prediction.py turns the levels into a latency curve for Poisson load.
"""

from __future__ import annotations

from collections.abc import Callable

from analysis.prediction import Level, still_scales
from inferbench.errors import InferBenchError
from inferbench.load.priority import issuer_priority
from inferbench.load.runner import Request, StopRule, run_point

# Each level needs at least this many answers for its percentiles to mean anything.
MIN_LEVEL_REQUESTS = 50
# Profiling a server that keeps scaling stops here (its capacity is then a lower bound).
MAX_IN_FLIGHT = 16
# Later levels run on a warm server: a short warm-up at their own concurrency suffices.
LEVEL_SETTLE_S = 0.5


def profile_levels(requests: list[Request], parallelism: int, *, profile_s: float,
                   warmup_s: float, request_timeout_s: float, seed: int = 0,
                   log: Callable[[str], None] | None = None) -> list[Level]:
    """Levels 1..parallelism + 2 in flight, `profile_s` measured seconds each, and more
    while the top level still scaled (time spent outside the workers kept them idle part of
    the time), up to MAX_IN_FLIGHT."""
    if parallelism < 1:
        raise InferBenchError(f"parallelism {parallelism!r} must be >= 1")
    if profile_s <= 0:
        raise InferBenchError(f"profile seconds {profile_s!r} must be > 0")
    levels: dict[int, Level] = {}

    def wanted(k: int) -> bool:
        return k <= parallelism + 2 or (k <= MAX_IN_FLIGHT and still_scales(levels, k - 1))

    k = 1
    while wanted(k):
        rule = StopRule(profile_s, MIN_LEVEL_REQUESTS, max(3 * profile_s, profile_s + 10))
        with issuer_priority():
            records = run_point(requests, concurrency=k, seed=seed + k,
                                warmup_s=warmup_s if k == 1 else LEVEL_SETTLE_S, rule=rule,
                                request_timeout_s=request_timeout_s)
        a = records.arrays()
        ok = (a["status"] == 200) & (a["done_ns"] >= 0)
        failed = int((~ok).sum())
        if failed:
            raise InferBenchError(f"profiling at {k} in flight: {failed} of {ok.size} "
                                  "requests failed; the endpoint must answer every request "
                                  "to be profiled")
        latency_ms = (a["done_ns"][ok] - a["sent_ns"][ok]) / 1e6
        level = Level.from_latencies(k, latency_ms,
                                     (records.ended_ns - records.started_ns) / 1e9)
        levels[k] = level
        if log is not None:
            log(f"profile: {k} in flight: {level.throughput_rps:.1f} req/s, mean "
                f"{level.mean_ms:.3f} ms, p99 {level.percentile_ms(99):.3f} ms "
                f"({level.n} requests)")
        k += 1
    return list(levels.values())

