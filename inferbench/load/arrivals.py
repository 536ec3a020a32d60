"""Open-loop arrival schedules, drawn lazily from a logged seed.

A schedule is an iterator of offsets in nanoseconds from the start of a phase; the
issuer sends each request at its offset whatever happened to the previous ones, which is
what makes the load open-loop (and latency measurable from the scheduled time).

Processes:
- poisson: i.i.d. exponential gaps (the memoryless arrivals of many independent users).
- constant: the same gap every time (what wrk2 and perf_analyzer's --request-rate do).
- gamma: i.i.d. gamma gaps with a chosen burstiness = CV^2 of the gaps (1 is Poisson,
  > 1 is burstier, < 1 smoother), the same mean rate.
- step / spike / ramp: a non-homogeneous Poisson process whose rate changes with time,
  drawn by thinning (Lewis & Shedler): a Poisson stream at the peak rate, each arrival
  kept with probability rate(t) / peak. Thinning keeps the result exactly Poisson with
  the time-varying rate, with no discretisation of time.
- trace: replay of a user's CSV of timestamps (seconds), optionally with payload ids.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inferbench import user_files
from inferbench.errors import InferBenchError

if TYPE_CHECKING:
    from inferbench.spec import WorkloadSpec

_CHUNK = 4096  # draws per numpy call: one call per few thousand arrivals keeps the issuer cheap


def _check_rate(rate_rps: float, name: str = "rate_rps") -> None:
    if not rate_rps > 0:
        raise ValueError(f"{name} must be > 0, got {rate_rps!r}")


def poisson_offsets_ns(rate_rps: float, seed: int, chunk: int = _CHUNK) -> Iterator[int]:
    """Arrival offsets of a Poisson process: i.i.d. exponential gaps with mean 1/rate."""
    if rate_rps <= 0:
        raise ValueError(f"rate_rps must be > 0, got {rate_rps!r}")
    rng = np.random.default_rng(seed)
    t = 0.0
    while True:
        gaps = rng.exponential(1e9 / rate_rps, size=chunk)
        for gap in gaps:
            t += gap
            yield int(t)


def constant_offsets_ns(rate_rps: float) -> Iterator[int]:
    """Evenly spaced arrivals: the k-th at k/rate (k >= 1), computed without drift."""
    _check_rate(rate_rps)
    period_ns = 1e9 / rate_rps
    k = 1
    while True:
        # k * period rather than a running sum: no accumulated rounding over millions of sends.
        yield int(k * period_ns)
        k += 1


def gamma_offsets_ns(rate_rps: float, burstiness: float, seed: int,
                     chunk: int = _CHUNK) -> Iterator[int]:
    """Gamma-distributed gaps with mean 1/rate and squared coefficient of variation
    `burstiness` (shape k = 1/burstiness, scale = burstiness/rate)."""
    _check_rate(rate_rps)
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness!r}")
    rng = np.random.default_rng(seed)
    shape, scale_ns = 1.0 / burstiness, burstiness * 1e9 / rate_rps
    t = 0.0
    while True:
        for gap in rng.gamma(shape, scale_ns, size=chunk):
            t += gap
            yield int(t)


RateFunction = Callable[[np.ndarray], np.ndarray]


def thinned_offsets_ns(rate_at: RateFunction, peak_rps: float, seed: int,
                       chunk: int = _CHUNK) -> Iterator[int]:
    """Non-homogeneous Poisson arrivals with rate `rate_at(t_s)` <= `peak_rps`, by thinning."""
    _check_rate(peak_rps, "peak rate")
    rng = np.random.default_rng(seed)
    t_ns = 0.0
    while True:
        times_ns = t_ns + np.cumsum(rng.exponential(1e9 / peak_rps, size=chunk))
        keep = rng.random(chunk) * peak_rps < rate_at(times_ns / 1e9)
        t_ns = float(times_ns[-1])
        for t in times_ns[keep]:
            yield int(t)


def step_rate(base_rps: float, peak_rps: float, at_s: float) -> RateFunction:
    """base before `at_s`, peak from then on."""
    return lambda t: np.where(t < at_s, base_rps, peak_rps)


def spike_rate(base_rps: float, peak_rps: float, at_s: float, duration_s: float) -> RateFunction:
    """peak during [at_s, at_s + duration_s), base otherwise."""
    return lambda t: np.where((t >= at_s) & (t < at_s + duration_s), peak_rps, base_rps)


def ramp_rate(base_rps: float, peak_rps: float, at_s: float, duration_s: float) -> RateFunction:
    """base until `at_s`, then linear to peak over `duration_s`, then peak."""
    def rate(t: np.ndarray) -> np.ndarray:
        frac = np.clip((t - at_s) / duration_s, 0.0, 1.0) if duration_s > 0 else \
            (t >= at_s).astype(np.float64)
        return base_rps + (peak_rps - base_rps) * frac
    return rate


@dataclass(frozen=True)
class Trace:
    """A replayable trace: offsets from its first timestamp, and optional payload ids."""

    offsets_ns: np.ndarray
    payload_ids: np.ndarray | None

    @property
    def mean_rate_rps(self) -> float:
        span_s = float(self.offsets_ns[-1]) / 1e9
        return (len(self.offsets_ns) - 1) / span_s if span_s > 0 else float("inf")


# A trace is parsed into Python floats: 64 MiB of CSV is about 3 million arrivals.
MAX_TRACE_BYTES = 64 << 20
# Nanosecond offsets are int64; a longer span is a unit mistake (ms or us for seconds).
MAX_TRACE_SPAN_S = 7 * 86_400.0


def load_trace(path: str | Path, dirs: Sequence[Path] | None = None) -> Trace:
    """Read a CSV trace: first column timestamps in seconds (any origin, non-decreasing),
    optional second column an integer payload id. A header row is allowed. `dirs`: the
    directories the file must lie in (None: anywhere). Errors give line numbers, never the
    line itself."""
    text = user_files.read_text(path, field="trace_path", max_bytes=MAX_TRACE_BYTES,
                                dirs=dirs)
    name = f"trace_path {str(path)!r}"
    times: list[float] = []
    ids: list[int] = []
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        try:
            t = float(row[0])
            payload = int(row[1]) if len(row) > 1 and row[1].strip() else None
        except ValueError:
            if lineno == 1 and not times:
                continue  # a header row
            raise InferBenchError(f"{name} line {lineno} is not '<seconds>[,<payload id>]'; "
                                  "fix the line") from None
        if not math.isfinite(t):
            raise InferBenchError(f"{name} line {lineno}: the timestamp is not a finite "
                                  "number; fix the line")
        times.append(t)
        if payload is not None:
            ids.append(payload)
    if not times:
        raise InferBenchError(f"{name} has no timestamps; fix: one timestamp in seconds per "
                              "line")
    if ids and len(ids) != len(times):
        raise InferBenchError(f"{name}: {len(ids)} of {len(times)} lines have a payload id; "
                              "fix: give one on every line or on none")
    t = np.asarray(times, dtype=np.float64)
    if np.any(np.diff(t) < 0):
        bad = int(np.argmax(np.diff(t) < 0)) + 1
        raise InferBenchError(f"{name}: timestamp {t[bad]!r} comes before the previous one "
                              f"{t[bad - 1]!r}; fix: sort the trace by time")
    if t[-1] - t[0] > MAX_TRACE_SPAN_S:
        raise InferBenchError(f"{name} spans {t[-1] - t[0]:.4g} s, over {MAX_TRACE_SPAN_S:g} "
                              "s; fix: give timestamps in seconds, or split the trace")
    offsets = np.rint((t - t[0]) * 1e9).astype(np.int64)
    return Trace(offsets, np.asarray(ids, dtype=np.int64) if ids else None)


def partition_offsets_ns(offsets: Iterator[int], parts: int, part: int,
                         seed: int) -> Iterator[int]:
    """The arrivals of `offsets` that fall to issuer `part` of `parts`, each arrival given to
    one issuer uniformly at random (seeded). Every issuer runs this on the same logged stream,
    so together they send exactly that stream; split this way a Poisson stream of rate R
    gives each issuer a Poisson stream of rate R/parts (thinning)."""
    if not 0 <= part < parts:
        raise ValueError(f"part must be in [0, {parts}), got {part!r}")
    rng = np.random.default_rng(seed)
    while True:
        owners = rng.integers(0, parts, size=_CHUNK)
        for owner in owners:
            offset = next(offsets, None)
            if offset is None:
                return
            if owner == part:
                yield offset


@dataclass(frozen=True)
class Schedule:
    """What an open-loop issuer needs: arrival offsets and, for a trace, which payload each
    arrival sends (None: rotate over the prepared payloads)."""

    offsets_ns: Iterator[int]
    payload_ids: Iterator[int] | None = None
    # A replayed trace plays to its end (or the max-duration cap): stopping it as soon as
    # the minimums are met would cut the user's trace short.
    play_to_end: bool = False


def schedule_for(workload: WorkloadSpec, seed: int,
                 trace_dirs: Sequence[Path] | None = None) -> Schedule:
    """The open-loop schedule a workload spec asks for, drawn from `seed`; a trace file must
    lie in `trace_dirs` (None: anywhere, for the stand-alone command's own user)."""
    from inferbench.spec import Arrival

    w, a = workload, workload.arrival
    if a is Arrival.POISSON:
        return Schedule(poisson_offsets_ns(w.rate_rps, seed))
    if a is Arrival.CONSTANT:
        return Schedule(constant_offsets_ns(w.rate_rps))
    if a is Arrival.GAMMA:
        return Schedule(gamma_offsets_ns(w.rate_rps, w.burstiness, seed))
    if a in (Arrival.STEP, Arrival.SPIKE, Arrival.RAMP):
        base, peak = w.rate_rps, w.peak_rate_rps
        if a is Arrival.STEP:
            rate = step_rate(base, peak, w.change_at_s)
        elif a is Arrival.SPIKE:
            rate = spike_rate(base, peak, w.change_at_s, w.change_duration_s)
        else:
            rate = ramp_rate(base, peak, w.change_at_s, w.change_duration_s)
        return Schedule(thinned_offsets_ns(rate, max(base, peak), seed))
    if a is Arrival.TRACE:
        trace = load_trace(w.trace_path, trace_dirs)
        ids = iter(trace.payload_ids.tolist()) if trace.payload_ids is not None else None
        return Schedule(iter(trace.offsets_ns.tolist()), ids, play_to_end=True)
    raise ValueError(f"arrival {a.value!r} is not an open-loop process")
