"""The load generator: issues requests at their scheduled times and records each one.

Latency is measured from the *scheduled* send time, so a stalled server cannot hide its
stall by slowing the generator down (coordinated omission). Each request records
scheduled / sent / first-byte / done timestamps (wall-clock ns) and its HTTP status.

A measurement phase ends when both `min_duration_s` and `min_requests` completions are
reached, or at `max_duration_s` (then the point is marked incomplete). A warm-up phase
with the same arrival process runs first and is not recorded.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from inferbench.load.arrivals import poisson_offsets_ns
from inferbench.load.http import Connection, ConnectionPool, Response, encode_http_request

# asyncio's timers fire up to ~1 ms late (epoll has millisecond resolution), so the issuer
# sleeps until shortly before a send and yields in a tight loop for the rest.
_SPIN_NS = 4_000_000


@dataclass(frozen=True)
class Request:
    """A prepared request: URL, body and headers, encoded once before the run."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class StopRule:
    min_duration_s: float
    min_requests: int
    max_duration_s: float


@dataclass
class PhaseRecords:
    """Per-request records of one measurement phase, as numpy arrays."""

    scheduled_ns: list[int] = field(default_factory=list)
    sent_ns: list[int] = field(default_factory=list)
    first_byte_ns: list[int] = field(default_factory=list)
    done_ns: list[int] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    bytes_sent: list[int] = field(default_factory=list)
    bytes_received: list[int] = field(default_factory=list)
    started_ns: int = 0
    ended_ns: int = 0
    stop_reason: str = ""
    complete: bool = False
    client_cpu_s: float = 0.0

    def __len__(self) -> int:
        return len(self.status)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "scheduled_ns": np.asarray(self.scheduled_ns, dtype=np.int64),
            "sent_ns": np.asarray(self.sent_ns, dtype=np.int64),
            "first_byte_ns": np.asarray(self.first_byte_ns, dtype=np.int64),
            "done_ns": np.asarray(self.done_ns, dtype=np.int64),
            "status": np.asarray(self.status, dtype=np.int32),
            "bytes_sent": np.asarray(self.bytes_sent, dtype=np.int64),
            "bytes_received": np.asarray(self.bytes_received, dtype=np.int64),
        }


class _Clock:
    """Monotonic clock reported as wall-clock ns: monotonic for intervals, wall for storage."""

    def __init__(self) -> None:
        self._wall0 = time.time_ns()
        self._mono0 = time.perf_counter_ns()

    def now(self) -> int:
        return self._wall0 + (time.perf_counter_ns() - self._mono0)


class _Phase:
    """State shared by the issuers of one phase (warm-up or measurement)."""

    def __init__(self, clock: _Clock, rule: StopRule, record: bool) -> None:
        self.clock = clock
        self.rule = rule
        self.records = PhaseRecords()
        self.record = record
        self.completed = 0
        self.started_ns = clock.now()
        self.stop_reason = ""
        self.stopped_ns = 0

    def should_stop(self) -> bool:
        if self.stop_reason:
            return True
        elapsed_s = (self.clock.now() - self.started_ns) / 1e9
        if elapsed_s >= self.rule.max_duration_s:
            self.stop_reason = "max_duration"
        elif elapsed_s >= self.rule.min_duration_s and self.completed >= self.rule.min_requests:
            self.stop_reason = "min_reached"
        if self.stop_reason:
            self.stopped_ns = self.clock.now()
        return bool(self.stop_reason)


def _record(phase: _Phase, scheduled_ns: int, sent_ns: int, size_sent: int,
            response: Response | None) -> None:
    phase.completed += 1
    if not phase.record:
        return
    r = phase.records
    r.scheduled_ns.append(scheduled_ns)
    r.sent_ns.append(sent_ns)
    r.first_byte_ns.append(response.first_byte_ns if response else -1)
    r.done_ns.append(response.done_ns if response else -1)
    r.status.append(response.status if response else 0)  # 0: no response
    r.bytes_sent.append(size_sent)
    r.bytes_received.append(response.size if response else 0)


async def _complete(phase: _Phase, conn: Connection, future: asyncio.Future, scheduled_ns: int,
                    sent_ns: int, size: int, timeout_s: float) -> None:
    try:
        response = await asyncio.wait_for(future, timeout_s)
    except (TimeoutError, ConnectionError, OSError):
        conn.close()  # a late answer must not land on the next request of this connection
        response = None
    _record(phase, scheduled_ns, sent_ns, size, response)


async def _send_on_new_connection(pool: ConnectionPool, raw: bytes, phase: _Phase,
                                  scheduled_ns: int, timeout_s: float) -> None:
    try:
        conn = await asyncio.wait_for(pool.acquire(), timeout_s)
    except (TimeoutError, OSError):
        _record(phase, scheduled_ns, phase.clock.now(), len(raw), None)
        return
    sent = phase.clock.now()
    await _complete(phase, conn, conn.send(raw), scheduled_ns, sent, len(raw), timeout_s)


async def _sleep_until(clock: _Clock, target_ns: int) -> None:
    delay = target_ns - clock.now()
    if delay > _SPIN_NS:
        await asyncio.sleep((delay - _SPIN_NS) / 1e9)
    while clock.now() < target_ns:
        await asyncio.sleep(0)


async def _open_loop(pool: ConnectionPool, raws: list[bytes], phase: _Phase,
                     offsets: Iterator[int], timeout_s: float) -> None:
    in_flight: set[asyncio.Task] = set()
    i = 0
    while not phase.should_stop():
        scheduled = phase.started_ns + next(offsets)
        await _sleep_until(phase.clock, scheduled)
        if phase.should_stop():
            break
        raw = raws[i % len(raws)]
        i += 1
        conn = pool.try_acquire()
        if conn is not None:
            # Written here, synchronously: the send time is not at the mercy of task order.
            sent = phase.clock.now()
            coro = _complete(phase, conn, conn.send(raw), scheduled, sent, len(raw), timeout_s)
        else:
            coro = _send_on_new_connection(pool, raw, phase, scheduled, timeout_s)
        task = asyncio.create_task(coro)
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)


async def _closed_loop(pool: ConnectionPool, raws: list[bytes], phase: _Phase,
                       concurrency: int, timeout_s: float) -> None:
    counter = iter(range(1 << 62))

    async def client() -> None:
        while not phase.should_stop():
            # In a closed loop a request is due the moment its client is free.
            scheduled = phase.clock.now()
            await _send_on_new_connection(pool, raws[next(counter) % len(raws)], phase,
                                          scheduled, timeout_s)

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def _run_phase(pool: ConnectionPool, raws: list[bytes], phase: _Phase, *,
                     concurrency: int | None, rate_rps: float | None, seed: int,
                     timeout_s: float) -> None:
    if concurrency is not None:
        await _closed_loop(pool, raws, phase, concurrency, timeout_s)
    else:
        assert rate_rps is not None
        await _open_loop(pool, raws, phase, poisson_offsets_ns(rate_rps, seed), timeout_s)


async def run_point_async(requests: list[Request], *, concurrency: int | None,
                          rate_rps: float | None, seed: int, warmup_s: float, rule: StopRule,
                          request_timeout_s: float) -> PhaseRecords:
    """Warm up, then measure one point. Exactly one of concurrency / rate_rps is given."""
    if (concurrency is None) == (rate_rps is None):
        raise ValueError("give exactly one of concurrency (closed loop) or rate_rps (open loop)")
    clock = _Clock()
    encoded = [encode_http_request(r.url, r.body, r.headers) for r in requests]
    hosts = {(host, port) for host, port, _ in encoded}
    if len(hosts) != 1:
        raise ValueError(f"all requests of a point go to one server, got {sorted(hosts)}")
    (host, port), raws = hosts.pop(), [raw for _, _, raw in encoded]
    pool = ConnectionPool(host, port, clock.now)
    try:
        if warmup_s > 0:
            warm = _Phase(clock, StopRule(warmup_s, 0, warmup_s), record=False)
            # The warm-up uses its own seed stream so the measured arrivals are the logged ones.
            await _run_phase(pool, raws, warm, concurrency=concurrency, rate_rps=rate_rps,
                             seed=seed + 1_000_003, timeout_s=request_timeout_s)
        phase = _Phase(clock, rule, record=True)
        cpu0 = time.process_time()
        await _run_phase(pool, raws, phase, concurrency=concurrency, rate_rps=rate_rps,
                         seed=seed, timeout_s=request_timeout_s)
    finally:
        pool.close()
    records = phase.records
    records.client_cpu_s = time.process_time() - cpu0
    records.started_ns = phase.started_ns
    done = [d for d in records.done_ns if d >= 0]
    # The window is the time load was offered, and longer if the last answers came later.
    records.ended_ns = max([phase.stopped_ns, *done])
    records.stop_reason = phase.stop_reason
    records.complete = phase.stop_reason == "min_reached"
    return records


def run_point(requests: list[Request], **kwargs) -> PhaseRecords:
    # A full garbage collection of a large heap pauses the issuer for milliseconds; the
    # records are plain ints (no cycles), so collect once now and not during the point.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return asyncio.run(run_point_async(requests, **kwargs))
    finally:
        gc.enable()
        gc.unfreeze()
