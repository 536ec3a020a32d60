"""Light profiling of a running endpoint: closed-loop levels for the queueing prediction.

Level k keeps exactly k requests in flight for a few seconds (no random arrivals); levels
1..c measure the service under each degree of parallelism, levels c + 1 and c + 2 the
server's capacity (its workers never idle: two beyond c, so that one request's time
outside the server, or a jittery hand-over, does not leave a worker waiting).
Then open-loop Poisson probes measure what no closed loop can: at PROBE_RHO of that
capacity, the latency of a request that arrives at an idle server (level 0, the
idle-arrival law: the probe's requests due while nothing was in flight); at
PROBE_LOADED_RHO, the mean under timer-driven load (level -1, the open-loop factor's
calibration); and at PROBE_NEAR_RHO of the capacity that calibration gives, the mean near
capacity (level -2: the factor changes with the load, and near capacity matters most).
analysis/prediction.py turns the levels into a latency curve for Poisson load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from analysis.prediction import (
    IDLE_LEVEL,
    NEAR_OPEN_LEVEL,
    OPEN_LEVEL,
    Level,
    predict,
    still_scales,
)
from inferbench.errors import InferBenchError
from inferbench.load.priority import issuer_priority
from inferbench.load.profile_plan import (
    LEVEL_SETTLE_S,
    MAX_IN_FLIGHT,
    MIN_LEVEL_REQUESTS,
    PROBE_LEAST_IDLE,
    PROBE_LOADED_MIN,
    PROBE_LOADED_RHO,
    PROBE_MAX_S,
    PROBE_MIN_IDLE,
    PROBE_NEAR_RHO,
    PROBE_NEAR_STEP,
    PROBE_RHO,
)
from inferbench.load.runner import Request, StopRule, run_point


def profile_levels(requests: list[Request], parallelism: int, *, profile_s: float,
                   warmup_s: float, request_timeout_s: float, seed: int = 0,
                   log: Callable[[str], None] | None = None,
                   open_loop_probes: bool = True,
                   dynamic_batching: bool = False) -> list[Level]:
    """Levels 1..parallelism + 2 in flight, `profile_s` measured seconds each, and more
    while the top level still scaled (time spent outside the workers kept them idle part of
    the time), up to MAX_IN_FLIGHT; then, with `open_loop_probes`, the idle-arrival level
    and the loaded open-loop levels - never for a server that declares `dynamic_batching`,
    which the model does not describe, so no probe would be read."""
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
        a, duration = answered_point(requests, f"profiling at {k} in flight", rule=rule,
                                     concurrency=k, seed=seed + k,
                                     warmup_s=warmup_s if k == 1 else LEVEL_SETTLE_S,
                                     request_timeout_s=request_timeout_s)
        level = Level.from_latencies(k, (a["done_ns"] - a["sent_ns"]) / 1e6, duration)
        levels[k] = level
        if log is not None:
            log(f"profile: {k} in flight: {level.throughput_rps:.1f} req/s, mean "
                f"{level.mean_ms:.3f} ms, p99 {level.percentile_ms(99):.3f} ms "
                f"({level.n} requests)")
        k += 1
    capacity = max(lv.throughput_rps for k, lv in levels.items() if k >= parallelism)
    if not open_loop_probes or dynamic_batching:
        return sorted(levels.values(), key=lambda lv: lv.in_flight)
    idle = probe_idle_arrivals(requests, PROBE_RHO * capacity, profile_s=profile_s,
                               request_timeout_s=request_timeout_s, seed=seed, log=log)
    if idle is not None:
        levels[IDLE_LEVEL] = idle
    try:
        levels[OPEN_LEVEL] = probe_loaded(requests, PROBE_LOADED_RHO * capacity,
                                          profile_s=profile_s,
                                          request_timeout_s=request_timeout_s, seed=seed,
                                          log=log)
        # The capacity the first probe calibrates places the second near it.
        model = predict(levels.values(), parallelism).model
        near = PROBE_NEAR_RHO * model.capacity_rps
        if not model.unmodelled and near >= PROBE_NEAR_STEP * levels[OPEN_LEVEL].throughput_rps:
            levels[NEAR_OPEN_LEVEL] = probe_loaded(requests, near, profile_s=profile_s,
                                                   request_timeout_s=request_timeout_s,
                                                   seed=seed + 1, log=log,
                                                   in_flight=NEAR_OPEN_LEVEL)
    except InferBenchError as exc:
        # A server that fails under open-loop load: the prediction stands on the probes
        # it answered, and the log says why the rest are missing.
        if log is not None:
            log(f"profile: open-loop factor incomplete ({exc})")
    return sorted(levels.values(), key=lambda lv: lv.in_flight)


def idle_arrivals(scheduled_ns: np.ndarray, done_ns: np.ndarray) -> np.ndarray:
    """Which requests of an open-loop point arrived (were due) while nothing was in flight:
    every request due before them had been answered. The first has no known past (the
    warm-up's requests may be in flight), so it never counts."""
    order = np.argsort(scheduled_ns, kind="stable")
    answered_by = np.maximum.accumulate(done_ns[order])
    idle_sorted = np.zeros(order.size, dtype=bool)
    idle_sorted[1:] = scheduled_ns[order][1:] > answered_by[:-1]
    idle = np.empty_like(idle_sorted)
    idle[order] = idle_sorted
    return idle


def answered_point(requests: list[Request], what: str, **point
                   ) -> tuple[dict[str, np.ndarray], float]:
    """One point of the profile (`run_point`'s arguments), at the issuer's priority: its
    records and measured seconds. Every request must be answered: a profile of a server
    that fails some is no profile of its service."""
    with issuer_priority():
        records = run_point(requests, **point)
    a = records.arrays()
    ok = (a["status"] == 200) & (a["done_ns"] >= 0)
    if not ok.all():
        raise InferBenchError(f"{what}: {int((~ok).sum())} of {ok.size} requests failed; "
                              "the endpoint must answer every request to be profiled")
    return a, (records.ended_ns - records.started_ns) / 1e9


def open_loop_point(requests: list[Request], rate_rps: float, duration_s: float, *,
                    what: str, request_timeout_s: float, seed: int
                    ) -> tuple[dict[str, np.ndarray], float]:
    """One Poisson probe of `duration_s` measured seconds (at most PROBE_MAX_S)."""
    duration_s = min(duration_s, PROBE_MAX_S)
    return answered_point(requests, f"the {what} probe at {rate_rps:.1f} req/s",
                          rate_rps=rate_rps, seed=seed, warmup_s=LEVEL_SETTLE_S,
                          rule=StopRule(duration_s, 0, duration_s + 10),
                          request_timeout_s=request_timeout_s)


def probe_idle_arrivals(requests: list[Request], rate_rps: float, *, profile_s: float,
                        request_timeout_s: float, seed: int = 0,
                        log: Callable[[str], None] | None = None) -> Level | None:
    """The idle-arrival level: a Poisson point at `rate_rps`; the latency (from the due
    time, as the rungs measure it) of its requests that arrived while nothing was in
    flight. None when too few did."""
    # At rho = PROBE_RHO at least 1 - PROBE_RHO of the arrivals find the server idle.
    needed_s = PROBE_MIN_IDLE / (rate_rps * (1.0 - PROBE_RHO))
    a, duration = open_loop_point(requests, rate_rps, max(profile_s, needed_s),
                                  what="idle-arrival", request_timeout_s=request_timeout_s,
                                  seed=seed + 7919)
    sent = a["status"].size
    idle = idle_arrivals(a["scheduled_ns"], a["done_ns"])
    latency_ms = (a["done_ns"][idle] - a["scheduled_ns"][idle]) / 1e6
    if latency_ms.size < PROBE_LEAST_IDLE:
        if log is not None:
            log(f"profile: idle-arrival probe at {rate_rps:.1f} req/s: only "
                f"{latency_ms.size} of {sent} arrivals found the server idle; no "
                "idle-arrival law")
        return None
    level = Level.from_latencies(IDLE_LEVEL, latency_ms, duration)
    # The level's rate is the probe's (all its requests), not the idle arrivals'.
    level = replace(level, throughput_rps=sent / duration)
    if log is not None:
        log(f"profile: idle-arrival probe at {rate_rps:.1f} req/s: {level.n} of {sent} "
            f"arrivals found the server idle: mean {level.mean_ms:.3f} ms, p99 "
            f"{level.percentile_ms(99):.3f} ms")
    return level


def probe_loaded(requests: list[Request], rate_rps: float, *, profile_s: float,
                 request_timeout_s: float, seed: int = 0,
                 log: Callable[[str], None] | None = None,
                 in_flight: int = OPEN_LEVEL) -> Level:
    """A loaded open-loop level: a Poisson point at `rate_rps`, every request's due time
    and latency (from the due time), for the model to be replayed on."""
    a, duration = open_loop_point(requests, rate_rps,
                                  max(profile_s, PROBE_LOADED_MIN / rate_rps), what="loaded",
                                  request_timeout_s=request_timeout_s, seed=seed + 7927)
    order = np.argsort(a["scheduled_ns"], kind="stable")  # due order: the model replays it
    due = a["scheduled_ns"][order]
    latency_ms = (a["done_ns"][order] - due) / 1e6
    level = replace(Level.from_latencies(in_flight, latency_ms, duration),
                    arrivals_ms=tuple(float(x) for x in (due - due[0]) / 1e6),
                    latencies_ms=tuple(float(x) for x in latency_ms))
    if log is not None:
        log(f"profile: loaded open-loop probe at {rate_rps:.1f} req/s: {level.n} requests, "
            f"{level.throughput_rps:.1f} req/s, mean {level.mean_ms:.3f} ms, p99 "
            f"{level.percentile_ms(99):.3f} ms")
    return level

