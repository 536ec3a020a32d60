"""The load generator: issues requests at their scheduled times and records each one.

Latency is measured from the *scheduled* send time, so a stalled server cannot hide its
stall by slowing the generator down (coordinated omission). Each request records
scheduled / sent / first-byte / done timestamps (wall-clock ns) and its HTTP status.

A measurement phase ends when both `min_duration_s` and `min_requests` completions are
reached (and, when asked, the last measurement windows agree: see load/stability.py), or
at `max_duration_s` (then the point is marked incomplete), or when a replayed trace runs
out. A warm-up phase with the same arrival process runs first and is not recorded.
"""

from __future__ import annotations

import asyncio
import gc
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from inferbench.load import stability
from inferbench.load.arrivals import Schedule, poisson_offsets_ns
from inferbench.load.grpc_transport import GrpcPool, is_grpc_url, split_grpc_url
from inferbench.load.http import Connection, ConnectionPool, Response, encode_http_request
from inferbench.load.waker import FixedWaker, Waker

# Ways to wake up for a send (measured side by side in benchmarks/issuer_timing.py):
# - "spin": the default epoll loop, whose timers fire up to ~1 ms late (epoll_wait takes
#   milliseconds), so the issuer sleeps until 4 ms before a send and yields in a tight loop
#   for the rest: punctual on an idle host, but a core's worth of CPU at high rates, and on
#   an oversubscribed host the spinning process is the one the kernel preempts.
# - "select": an event loop on select(), whose timeout has microsecond resolution, so the
#   timer itself is punctual and only the last 0.2 ms are spun: a few % of a core, but at
#   low rates the host wakes a long-idle process later than that.
# - "adaptive" (the default): the select() loop with a spin lead learned from how late its
#   own sleeps end (load/waker.py), within a CPU budget.
# select() only takes file descriptors below 1024: beyond ~1000 connections in flight a
# new connection fails (the request is recorded as failed, status 0).
WAITERS = {"spin": 4_000_000, "select": 200_000, "adaptive": None}  # fixed lead, ns
DEFAULT_WAITER = "adaptive"


def make_waker(waiter: str, now_ns: Callable[[], int]) -> Waker:
    if waiter not in WAITERS:
        raise ValueError(f"unknown waiter {waiter!r}; known: {', '.join(WAITERS)}")
    lead = WAITERS[waiter]
    return Waker(now_ns) if lead is None else FixedWaker(now_ns, lead)


@dataclass(frozen=True)
class Request:
    """A prepared request: URL, body and headers, encoded once before the run."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class StopRule:
    """Stop when min duration AND min count are met (and, with `stability_windows` > 0, the
    last that many windows of `window_s` agree within `tolerance_pct`); cap at max."""

    min_duration_s: float
    min_requests: int
    max_duration_s: float
    stability_windows: int = 0
    window_s: float = 2.0
    tolerance_pct: float = 10.0


# How often the issuer re-checks window stability: the check costs a little numpy work,
# done between sends, so it must stay rare.
_STABILITY_CHECK_NS = 500_000_000
# A closed-loop client that could not send waits this long before its next try, doubling
# up to the maximum: a dead server costs a few failures a second per client, not a spin.
_RETRY_MIN_S = 0.001
_RETRY_MAX_S = 0.1


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
    payload: list[int] = field(default_factory=list)  # which of the requests' payloads went
    started_ns: int = 0
    ended_ns: int = 0
    stop_reason: str = ""
    complete: bool = False
    client_cpu_s: float = 0.0
    # Requests sent again during the measured phase because the server had closed their
    # idle keep-alive connection (http.ConnectionPool.resend); each one's latency includes
    # the lost attempt.
    resent_requests: int = 0
    stable: bool | None = None  # None: stability was not asked for
    stability_reasons: list[str] = field(default_factory=list)

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
            "payload": np.asarray(self.payload, dtype=np.int32),
        }


# How far past the common origin (start_at_ns) an issuer may finish its warm-up; a smaller
# overrun shows as a burst of late sends at the start (and an INVALID verdict if many).
_MAX_ORIGIN_OVERRUN_S = 2.0


class _Clock:
    """Monotonic clock reported as wall-clock ns: monotonic for intervals, wall for storage."""

    def __init__(self) -> None:
        self._wall0 = time.time_ns()
        self._mono0 = time.perf_counter_ns()

    def now(self) -> int:
        return self._wall0 + (time.perf_counter_ns() - self._mono0)


class _Phase:
    """State shared by the issuers of one phase (warm-up or measurement)."""

    def __init__(self, clock: _Clock, rule: StopRule, record: bool, waker: Waker) -> None:
        self.clock = clock
        self.rule = rule
        self.records = PhaseRecords()
        self.record = record
        self.completed = 0
        self.started_ns = clock.now()
        self.stop_reason = ""
        self.stopped_ns = 0
        self.stable: bool | None = None
        self.stability_reasons: list[str] = []
        self._next_check_ns = 0
        self._window_from = 0  # records before this index completed before every window
        self.play_to_end = False  # a trace: only its end or the cap stops the phase
        self.waker = waker
        self.loop = asyncio.get_running_loop()

    def minimums_met(self) -> bool:
        elapsed_s = (self.clock.now() - self.started_ns) / 1e9
        return elapsed_s >= self.rule.min_duration_s and self.completed >= self.rule.min_requests

    def check_stability(self, now_ns: int) -> bool:
        """Judge the last windows (ending now) and remember the outcome."""
        rule, r = self.rule, self.records
        span_ns = int(rule.stability_windows * rule.window_s * 1e9)
        if now_ns - self.started_ns < span_ns:
            self.stable, self.stability_reasons = False, [
                f"ran {(now_ns - self.started_ns) / 1e9:.1f} s, shorter than "
                f"{rule.stability_windows} windows of {rule.window_s:g} s"]
            return False
        # Records arrive in completion order: skip, once, those older than every window.
        cutoff = now_ns - span_ns
        while self._window_from < len(r.done_ns) and r.done_ns[self._window_from] < cutoff:
            self._window_from += 1
        i = self._window_from
        done = np.asarray(r.done_ns[i:], dtype=np.int64)
        ok = (np.asarray(r.status[i:]) == 200) & (done >= 0)
        lat_ms = (done[ok] - np.asarray(r.scheduled_ns[i:], dtype=np.int64)[ok]) / 1e6
        ws = stability.windows(done[ok], lat_ms, now_ns, rule.window_s, rule.stability_windows)
        self.stable, self.stability_reasons = stability.judge(ws, rule.tolerance_pct)
        return self.stable

    def should_stop(self) -> bool:
        if self.stop_reason:
            return True
        now = self.clock.now()
        elapsed_s = (now - self.started_ns) / 1e9
        if elapsed_s >= self.rule.max_duration_s:
            self.stop_reason = "max_duration"
            if self.rule.stability_windows and self.record and self.minimums_met() \
                    and not self.check_stability(now):
                self.stop_reason = "max_duration_unstable"
        elif not self.play_to_end and self.minimums_met():
            if not (self.rule.stability_windows and self.record):
                self.stop_reason = "min_reached"
            elif now >= self._next_check_ns:
                self._next_check_ns = now + _STABILITY_CHECK_NS
                if self.check_stability(now):
                    self.stop_reason = "stable"
        if self.stop_reason:
            self.stopped_ns = self.clock.now()
        return bool(self.stop_reason)

    def end_of_schedule(self) -> None:
        """A replayed trace ran out: the point ends here, complete if the rule was met."""
        now = self.clock.now()
        self.stop_reason = "schedule_end"
        if self.minimums_met() and self.rule.stability_windows and self.record:
            self.check_stability(now)
        self.stopped_ns = now


def _record(phase: _Phase, scheduled_ns: int, sent_ns: int, payload: int, size_sent: int,
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
    r.payload.append(payload)


class _InFlight:
    """Requests sent and not yet recorded; the phase waits for them to drain."""

    def __init__(self) -> None:
        self.count = 0
        self._drained: asyncio.Future | None = None

    def add(self) -> None:
        self.count += 1

    def done(self) -> None:
        self.count -= 1
        if self.count == 0 and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drain(self) -> None:
        if self.count:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _on_answer(phase: _Phase, conn: Connection, future: asyncio.Future, scheduled_ns: int,
               sent_ns: int, payload: int, size: int, timeout_s: float,
               in_flight: _InFlight) -> None:
    """Record the request when its answer (or its timeout, or a broken connection) comes.
    A callback on the answer's future, not a task per request: the open loop sends
    thousands a second, and a task plus a wait_for cost more CPU than the send itself."""
    in_flight.add()
    timer = phase.loop.call_later(timeout_s, _expire, future)

    def answered(f: asyncio.Future) -> None:
        timer.cancel()
        if f.cancelled() or f.exception() is not None:
            # Timed out, or the connection broke: the request failed (status 0), and a late
            # answer must not land on the next request of this connection.
            conn.close()
            response = None
        else:
            response = f.result()
        try:
            _record(phase, scheduled_ns, sent_ns, payload, size, response)
        finally:
            in_flight.done()

    future.add_done_callback(answered)


async def _send_on_new_connection(pool: ConnectionPool, raws: list[bytes], payload: int,
                                  phase: _Phase, scheduled_ns: int, timeout_s: float,
                                  in_flight: _InFlight) -> bool:
    """Send on a connection from the pool; False when none could be had (refused, or every
    connection busy): the request is recorded as failed and nothing was sent."""
    in_flight.add()  # counted while the connection opens, so the phase waits for it
    try:
        try:
            conn = await asyncio.wait_for(pool.acquire(), timeout_s)
        except (TimeoutError, OSError):
            _record(phase, scheduled_ns, phase.clock.now(), payload, len(raws[payload]), None)
            return False
        sent = phase.clock.now()
        raw = raws[payload]
        _on_answer(phase, conn, conn.send(raw), scheduled_ns, sent, payload, len(raw),
                   timeout_s, in_flight)
    finally:
        in_flight.done()
    return True


async def _open_loop(pool: ConnectionPool, raws: list[bytes], phase: _Phase,
                     schedule: Schedule, timeout_s: float) -> None:
    in_flight = _InFlight()
    opening: set[asyncio.Task] = set()  # sends waiting for a new connection
    offsets, payload_ids = schedule.offsets_ns, schedule.payload_ids
    phase.play_to_end = schedule.play_to_end
    i = 0
    while not phase.should_stop():
        offset = next(offsets, None)
        if offset is None:
            phase.end_of_schedule()
            break
        scheduled = phase.started_ns + offset
        await phase.waker.until(scheduled)
        if phase.should_stop():
            break
        payload = (next(payload_ids) if payload_ids is not None else i) % len(raws)
        raw = raws[payload]
        i += 1
        conn = pool.try_acquire()
        if conn is not None:
            # Written here, synchronously: the send time is not at the mercy of task order.
            sent = phase.clock.now()
            _on_answer(phase, conn, conn.send(raw), scheduled, sent, payload, len(raw),
                       timeout_s, in_flight)
        else:
            task = asyncio.create_task(
                _send_on_new_connection(pool, raws, payload, phase, scheduled, timeout_s,
                                        in_flight))
            opening.add(task)
            task.add_done_callback(opening.discard)
    if opening:
        await asyncio.gather(*opening)
    await in_flight.drain()


async def _closed_loop(pool: ConnectionPool, raws: list[bytes], phase: _Phase,
                       concurrency: int, timeout_s: float) -> None:
    counter = iter(range(1 << 62))

    async def client() -> None:
        backoff_s = 0.0
        while not phase.should_stop():
            # In a closed loop a request is due the moment its client is free.
            scheduled = phase.clock.now()
            in_flight = _InFlight()
            sent = await _send_on_new_connection(pool, raws, next(counter) % len(raws),
                                                 phase, scheduled, timeout_s, in_flight)
            await in_flight.drain()
            if sent:
                backoff_s = 0.0
                continue
            # Nothing went out (the server refuses connections, or is down): retrying at
            # once would spin the issuer and flood the records with failures.
            backoff_s = min(max(2.0 * backoff_s, _RETRY_MIN_S), _RETRY_MAX_S)
            await asyncio.sleep(backoff_s)

    await asyncio.gather(*(client() for _ in range(concurrency)))


ScheduleFactory = Callable[[int], Schedule]  # seed -> a fresh open-loop schedule


async def _run_phase(pool: ConnectionPool, raws: list[bytes], phase: _Phase, *,
                     concurrency: int | None, schedule: ScheduleFactory | None, seed: int,
                     timeout_s: float) -> None:
    if concurrency is not None:
        await _closed_loop(pool, raws, phase, concurrency, timeout_s)
    else:
        assert schedule is not None
        await _open_loop(pool, raws, phase, schedule(seed), timeout_s)


def _transport(requests: list[Request], clock: _Clock,
               timeout_s: float) -> tuple[ConnectionPool | GrpcPool, list[bytes]]:
    """The connection pool for the requests' server and the bytes each send writes: raw
    HTTP/1.1 messages, or serialized gRPC messages for grpc:// URLs."""
    if requests and is_grpc_url(requests[0].url):
        targets = {split_grpc_url(r.url) for r in requests}
        if len(targets) != 1:
            raise ValueError(f"all requests of a point go to one method, got {sorted(targets)}")
        target, method = targets.pop()
        return GrpcPool(target, method, clock.now, timeout_s), [r.body for r in requests]
    encoded = [encode_http_request(r.url, r.body, r.headers) for r in requests]
    hosts = {(host, port) for host, port, _ in encoded}
    if len(hosts) != 1:
        raise ValueError(f"all requests of a point go to one server, got {sorted(hosts)}")
    (host, port), raws = hosts.pop(), [raw for _, _, raw in encoded]
    return ConnectionPool(host, port, clock.now), raws


async def run_point_async(requests: list[Request], *, concurrency: int | None = None,
                          rate_rps: float | None = None, schedule: ScheduleFactory | None = None,
                          seed: int, warmup_s: float, rule: StopRule,
                          request_timeout_s: float, waiter: str = DEFAULT_WAITER,
                          start_at_ns: int | None = None,
                          on_measure_start: Callable[[], None] | None = None) -> PhaseRecords:
    """Warm up, then measure one point. Exactly one of concurrency (closed loop), rate_rps
    (open-loop Poisson) or schedule (any open-loop process, see arrivals.schedule_for).
    `start_at_ns` (wall clock) fixes the measurement's origin: issuers in several processes
    share one schedule origin that way (see load/multiprocess.py). `on_measure_start` runs
    between warm-up and measurement (e.g. to read the server's counters)."""
    if sum(x is not None for x in (concurrency, rate_rps, schedule)) != 1:
        raise ValueError("give exactly one of concurrency (closed loop), rate_rps or schedule "
                         "(open loop)")
    if rate_rps is not None:
        def schedule(seed: int, rate_rps: float = rate_rps) -> Schedule:
            return Schedule(poisson_offsets_ns(rate_rps, seed))
    clock = _Clock()
    waker = make_waker(waiter, clock.now)  # one for both phases: the warm-up teaches it
    pool, raws = _transport(requests, clock, request_timeout_s)
    try:
        if warmup_s > 0:
            warm = _Phase(clock, StopRule(warmup_s, 0, warmup_s), record=False, waker=waker)
            # The warm-up uses its own seed stream so the measured arrivals are the logged ones.
            await _run_phase(pool, raws, warm, concurrency=concurrency, schedule=schedule,
                             seed=seed + 1_000_003, timeout_s=request_timeout_s)
        if on_measure_start is not None:
            on_measure_start()
        if start_at_ns is not None:
            overrun_s = (clock.now() - start_at_ns) / 1e9
            if overrun_s > _MAX_ORIGIN_OVERRUN_S:
                # Measuring from a common origin already this far behind would offer the
                # point's whole schedule at once, or nothing once the cap has passed.
                raise RuntimeError(
                    f"the warm-up ended {overrun_s:.1f} s after the issuers' common start: its "
                    "answers came back too slowly (the server is not keeping up with the "
                    "offered rate); fix: lower the rate, or use one issuer process")
            await waker.until(start_at_ns)
        phase = _Phase(clock, rule, record=True, waker=waker)
        if start_at_ns is not None:
            phase.started_ns = start_at_ns
        cpu0, resent0 = time.process_time(), pool.resent
        await _run_phase(pool, raws, phase, concurrency=concurrency, schedule=schedule,
                         seed=seed, timeout_s=request_timeout_s)
    finally:
        pool.close()
    records = phase.records
    records.client_cpu_s = time.process_time() - cpu0
    records.resent_requests = pool.resent - resent0
    records.started_ns = phase.started_ns
    done = [d for d in records.done_ns if d >= 0]
    # The window is the time load was offered, and longer if the last answers came later.
    records.ended_ns = max([phase.stopped_ns, *done])
    records.stop_reason = phase.stop_reason
    records.stable, records.stability_reasons = phase.stable, phase.stability_reasons
    if phase.stop_reason == "schedule_end":
        # A trace ended: complete if the minimums were met by then (and windows agreed).
        elapsed_s = (phase.stopped_ns - phase.started_ns) / 1e9
        records.complete = (elapsed_s >= rule.min_duration_s and len(records) >= rule.min_requests
                            and phase.stable is not False)
    else:
        records.complete = phase.stop_reason in ("min_reached", "stable")
    return records


def new_loop(waiter: str) -> asyncio.AbstractEventLoop:
    """The event loop a waiter runs on (see WAITERS)."""
    if waiter not in WAITERS:
        raise ValueError(f"unknown waiter {waiter!r}; known: {', '.join(WAITERS)}")
    if waiter == "spin":
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


def run_point(requests: list[Request], *, waiter: str = DEFAULT_WAITER,
              **kwargs) -> PhaseRecords:
    # A full garbage collection of a large heap pauses the issuer for milliseconds; the
    # records are plain ints (no cycles), so collect once now and not during the point.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=lambda: new_loop(waiter)) as runner:
            return runner.run(run_point_async(requests, waiter=waiter, **kwargs))
    finally:
        gc.enable()
        gc.unfreeze()
