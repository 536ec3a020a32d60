"""The load ladder of one family: which offered loads to measure, one rung after another.

A *family* is one platform x server configuration x batch size; its rungs are measurement
points that differ only in offered load (req/s open loop, clients closed loop). The ladder
is a generator fed with results, as Model Analyzer's searches are (get_configs() /
set_last_results()): `Ladder.rungs()` yields the next rung, the caller measures it and hands
back its judgement with `Ladder.report()` before asking for the next. The ladder knows
nothing of servers, clocks or records, so every decision it takes is tested against a
synthetic server of known capacity.

Modes (spec: `ladder.mode`):
- single: one rung at the workload's rate or concurrency (one point per batch size).
- list: the workload's listed rates or concurrencies, lowest first; by default it stops at
  the first rung that does not hold (the loads above it only fail worse).
- search: from the workload's rate (or concurrency) a geometric climb, x `growth` per rung,
  until a rung fails; then bisection between the last load that held and the first that
  failed (at their geometric mean: the bracket's ratio halves in log space each time) until
  (bad - good) / good <= `precision_pct`. If the very first rung fails, the climb goes down
  instead (/ `growth`) until a rung holds, while the SLO-percentile latency keeps falling
  (a latency that no longer falls with the load is the server's floor, not its queue).
A search may be *guided* by a predicted capacity (analysis/prediction.py, from a light
profile of the server): it then starts just below the prediction, at guide / sqrt(1 + p)
(p = precision_pct / 100), so that when the prediction is right, that rung holds and the
next one up, x (1 + p), fails: the bracket is within the precision after two rungs. When
the prediction is off, the climb (or descent) moves by (1 + p), then (1 + p)^2, (1 + p)^4,
... up to `growth`: a few rungs more than an exact guess, never many.
Every mode stops at `max_rungs` rungs, and before a rung that would not fit in the
`max_family_s` left; a search stopped that way answers with a bound, not a bracket.

A rung holds only when it is a valid measurement *and* meets the SLO rule, as in the
analysis. A rung whose measurement was not valid (the generator fell behind, too short) and
whose numbers therefore decide nothing is measured once more at the same load (phase
`repeat`; list and search modes) before the ladder moves: host noise on a shared machine
should cost a rung, not the answer. A repeat that is not valid either does not hold.

`judge_records` turns a measured rung's records into the judgement the analysis uses
(analysis.capacity.judge_rung on analysis.summary's statistics), so the search stops where
the analysis later draws the line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from analysis.capacity import RungJudgement, judge_rung, sent_rate_rps
from analysis.summary import PointSummary, summarize_point
from inferbench.spec import MAX_CONCURRENCY, MAX_RATE_RPS, LadderMode

if TYPE_CHECKING:
    from inferbench.spec import BenchmarkSpec

__all__ = ["Ladder", "LadderEnd", "LadderMode", "LadderOutcome", "LadderPlan", "Phase", "Rung",
           "RungCheck", "RungResult", "judge_records", "judge_summary", "sent_rate_rps"]

# Loads are rounded to this many significant digits (141.4 req/s, not 141.42135623730951):
# readable in the log and the report, and far finer than the finest precision_pct (0.1 %).
_SIGNIFICANT_DIGITS = 4
# Going down from a first rung that failed continues only while the SLO-percentile latency
# falls by at least this share per rung: below that the latency is the server's own floor,
# which no lower load will bring under the SLO.
DESCENT_MIN_GAIN = 0.10


class Phase(StrEnum):
    """Which part of the ladder a rung belongs to (stored with the point)."""

    SINGLE = "single"
    LIST = "list"
    GEOMETRIC = "geometric"   # the climb (or, from a first rung that failed, the descent)
    BISECT = "bisect"
    REPEAT = "repeat"         # the rung before it, measured again: that one was not valid


class LadderEnd(StrEnum):
    """Why a ladder stopped."""

    SINGLE = "single"                  # its one rung ran
    LIST_END = "list_end"              # every listed load ran
    LIST_FAILED = "list_failed"        # stopped at the first listed load that did not hold
    PRECISION = "precision"            # bracket within precision_pct: capacity found
    NOTHING_HOLDS = "nothing_holds"    # no load tried held, down to the lowest worth trying
    SEARCH_CAP = "search_cap"          # held at the highest load the spec allows: a bound
    MAX_RUNGS = "max_rungs"            # cut short by ladder.max_rungs
    MAX_FAMILY_S = "max_family_s"      # cut short by ladder.max_family_s

    @property
    def bound(self) -> bool:
        """Whether a search that ended so answers with a bound rather than a bracket."""
        return self in (LadderEnd.SEARCH_CAP, LadderEnd.MAX_RUNGS, LadderEnd.MAX_FAMILY_S)


@dataclass(frozen=True)
class LadderPlan:
    """What a ladder needs from the spec: its mode, loads and bounds."""

    mode: LadderMode
    # single: (load,), or () for an arrival that names no rate (a trace); list: the list;
    # search: (start,)
    loads: tuple[float, ...]
    closed_loop: bool = False         # loads are clients (whole numbers), not req/s
    growth: float = 2.0
    precision_pct: float = 5.0
    max_rungs: int = 12
    max_family_s: float = 600.0
    stop_after_failure: bool = True
    floor: float = 0.0                # the search goes no lower
    ceiling: float = MAX_RATE_RPS     # nor higher
    guide: float | None = None        # search: a predicted capacity to start from

    def guided(self, capacity: float | None) -> LadderPlan:
        """This plan with a search guided by a predicted capacity (open loop only; a plan
        that is not a search, or no capacity, is returned as it is)."""
        if capacity is None or capacity <= 0 or self.mode is not LadderMode.SEARCH \
                or self.closed_loop:
            return self
        return replace(self, guide=capacity)

    @property
    def start(self) -> float:
        """The search's first load: the guided start, or the workload's load."""
        if self.guide is None:
            return self.loads[0]
        below = _tidy(self.guide / math.sqrt(1.0 + self.precision_pct / 100.0))
        return min(self.ceiling, max(self.floor, below))

    @classmethod
    def from_spec(cls, spec: BenchmarkSpec) -> LadderPlan:
        w, ladder = spec.workload, spec.ladder
        loads = tuple(w.loads)
        # A rung below min_requests / max_duration_s cannot finish min_requests in time, so
        # the analysis would call it INVALID whatever the server did: not worth running.
        floor = 1.0 if not w.open_loop else spec.min_requests / spec.max_duration_s
        return cls(mode=spec.ladder_mode, loads=loads, closed_loop=not w.open_loop,
                   growth=ladder.growth, precision_pct=ladder.precision_pct,
                   max_rungs=ladder.max_rungs, max_family_s=ladder.max_family_s,
                   stop_after_failure=ladder.stop_after_failure,
                   floor=min([floor, *loads]),
                   ceiling=float(MAX_CONCURRENCY) if not w.open_loop else MAX_RATE_RPS)


@dataclass(frozen=True)
class Rung:
    """One rung to measure: its index in the family, offered load and phase."""

    index: int
    offered: float | None             # req/s (open loop) or clients; None: a trace's own
    phase: Phase


@dataclass(frozen=True)
class RungResult:
    """What the ladder needs back from a measured rung."""

    holds: bool
    elapsed_s: float                  # its wall time, warm-up / settle / drain included
    reason: str | None = None         # why it does not hold
    latency_at_slo_ms: float | None = None
    # Not a valid measurement, and one whose numbers could not tell holding from failing
    # (see RungCheck.remeasure): the ladder measures the same load once more.
    remeasure: bool = False
    valid: bool = True                # a valid measurement (its latency speaks for the server)


@dataclass(frozen=True)
class LadderOutcome:
    """How a family's ladder ended: the highest load that held and the lowest above it
    that failed (the bracket), and why it stopped."""

    end: LadderEnd
    last_good: float | None           # the capacity (or, with a bound, a lower bound)
    first_bad: float | None           # None: nothing above last_good failed
    first_bad_reason: str | None
    rungs: int
    elapsed_s: float

    @property
    def bound(self) -> bool:
        return self.end.bound


@dataclass
class Ladder:
    """A family's ladder: iterate `rungs()`, and `report()` each rung's result before
    asking for the next one."""

    plan: LadderPlan
    history: list[tuple[Rung, RungResult]] = field(default_factory=list)
    end: LadderEnd | None = None
    _pending: Rung | None = None
    _good: float | None = None        # the search's bracket
    _bad: float | None = None

    def rungs(self) -> Iterator[Rung]:
        while True:
            if self._pending is not None:
                raise RuntimeError(f"rung {self._pending.index} has no result; call "
                                   "report() with it before asking for the next rung")
            step = self._next()
            if step is None:
                return
            if self.history and (stop := self._over_budget()) is not None:
                self.end = stop
                return
            self._pending = Rung(len(self.history), *step)
            yield self._pending

    def report(self, result: RungResult) -> None:
        """The measured result of the rung `rungs()` yielded last."""
        rung = self._pending
        if rung is None:
            raise RuntimeError("report() without a rung in flight: iterate rungs() first")
        self._pending = None
        self.history.append((rung, result))
        if self._repeat_due():
            return  # the repeat decides; this rung moves nothing
        # The search's bracket: each new load lies beyond it (climbing, descending) or
        # inside it (bisecting), so the latest result moves its side.
        if result.holds:
            self._good = rung.offered
        else:
            self._bad = rung.offered

    @property
    def outcome(self) -> LadderOutcome:
        if self.end is None:
            raise RuntimeError("the ladder has not ended yet: iterate rungs() to the end")
        measured = self._measured()
        held = [r.offered for r, res in measured if res.holds and r.offered is not None]
        good = max(held) if held else None
        failed = [(r.offered, res.reason) for r, res in measured
                  if not res.holds and r.offered is not None
                  and (good is None or r.offered > good)]
        bad, reason = min(failed) if failed else (None, None)
        return LadderOutcome(self.end, good, bad, reason, len(self.history),
                             sum(res.elapsed_s for _, res in self.history))

    # -- decisions ---------------------------------------------------------------------
    def repeats(self, rung: Rung, result: RungResult) -> bool:
        """Whether `rung`, measured as `result`, is measured again before the ladder moves:
        an invalid rung that could not tell holding from failing, once, unless the plan is
        a single point (what was asked for is that one measurement)."""
        return (result.remeasure and rung.phase is not Phase.REPEAT
                and self.plan.mode is not LadderMode.SINGLE)

    def _repeat_due(self) -> bool:
        """Whether the rung just reported is to be measured again before the ladder moves."""
        return self.repeats(*self.history[-1])

    def _measured(self) -> list[tuple[Rung, RungResult]]:
        """The history without the rungs a repeat superseded."""
        return [h for i, h in enumerate(self.history)
                if not (i + 1 < len(self.history) and self.history[i + 1][0].phase
                        is Phase.REPEAT)]

    def _next(self) -> tuple[float | None, Phase] | None:
        if self.history and self._repeat_due():
            return self.history[-1][0].offered, Phase.REPEAT
        plan, measured = self.plan, self._measured()
        n = len(measured)
        if plan.mode is LadderMode.SINGLE:
            if n:
                self.end = LadderEnd.SINGLE
                return None
            return (plan.loads[0] if plan.loads else None), Phase.SINGLE
        if plan.mode is LadderMode.LIST:
            if n and plan.stop_after_failure and not measured[-1][1].holds:
                self.end = LadderEnd.LIST_FAILED
                return None
            if n == len(plan.loads):
                self.end = LadderEnd.LIST_END
                return None
            return plan.loads[n], Phase.LIST
        return self._next_search()

    def _next_search(self) -> tuple[float, Phase] | None:
        plan = self.plan
        if not self.history:
            return plan.start, Phase.GEOMETRIC
        last = self.history[-1][0]
        good, bad = self._good, self._bad
        if bad is None:  # everything held so far: climb
            if last.offered >= plan.ceiling:
                self.end = LadderEnd.SEARCH_CAP
                return None
            return self._up(last.offered), Phase.GEOMETRIC
        if good is None:  # everything failed so far: go down while it can still help
            if last.offered <= plan.floor or not self._descent_helps():
                self.end = LadderEnd.NOTHING_HOLDS
                return None
            return self._down(last.offered), Phase.GEOMETRIC
        if self._converged(good, bad):
            self.end = LadderEnd.PRECISION
            return None
        return self._middle(good, bad), Phase.BISECT

    def _descent_helps(self) -> bool:
        """Whether the SLO-percentile latency fell enough from the rung above the last one
        (a rung without a latency, all requests failed, leaves the question open)."""
        measured = self._measured()
        if len(measured) < 2:
            return True
        (_, upper), (_, lower) = measured[-2:]
        # A rung that was not a valid measurement (the generator fell behind) says nothing
        # about the server's floor: keep going down, where the generator has it easier.
        if not (upper.valid and lower.valid):
            return True
        above, below = upper.latency_at_slo_ms, lower.latency_at_slo_ms
        if above is None or below is None:
            return True
        # A guided search's first steps are smaller than `growth`: the floor rule, tuned to
        # full steps, waits until the steps have grown to full size.
        if measured[-2][0].offered < self.plan.growth * 0.999 * measured[-1][0].offered:
            return True
        return below <= above * (1.0 - DESCENT_MIN_GAIN)

    def _over_budget(self) -> LadderEnd | None:
        plan = self.plan
        if len(self.history) >= plan.max_rungs:
            return LadderEnd.MAX_RUNGS
        # The next rung is assumed to take as long as the longest so far: a rung only starts
        # when it should still end within the family's time.
        spent = sum(res.elapsed_s for _, res in self.history)
        longest = max(res.elapsed_s for _, res in self.history)
        if spent + longest > plan.max_family_s:
            return LadderEnd.MAX_FAMILY_S
        return None

    def _converged(self, good: float, bad: float) -> bool:
        if self.plan.closed_loop and bad - good <= 1:
            return True
        return (bad - good) / good <= self.plan.precision_pct / 100.0

    def _step(self) -> float:
        """The factor of the next climb or descent: `growth`, or in a guided search
        (1 + p), (1 + p)^2, (1 + p)^4, ... up to `growth` (before the bracket forms, every
        measured rung moved in the same direction, so their count is the step's rank)."""
        plan = self.plan
        if plan.guide is None:
            return plan.growth
        # A hair under (1 + p): the first step's bracket must pass the precision test
        # after the loads are rounded.
        first = 1.0 + 0.999 * plan.precision_pct / 100.0
        rank = len(self._measured()) - 1
        return min(plan.growth, first ** (2 ** min(rank, 30)))

    def _up(self, load: float) -> float:
        plan = self.plan
        if plan.closed_loop:
            return float(min(plan.ceiling, max(load + 1, math.ceil(load * plan.growth))))
        return min(plan.ceiling, self._moved(load, self._step()))

    def _down(self, load: float) -> float:
        plan = self.plan
        if plan.closed_loop:
            return float(max(plan.floor, min(load - 1, math.floor(load / plan.growth))))
        return max(plan.floor, self._moved(load, 1.0 / self._step()))

    def _moved(self, load: float, factor: float) -> float:
        """load x factor, rounded; a guided step keeps the exact value where rounding would
        stretch it (its first step must land within the precision)."""
        tidy = _tidy(load * factor)
        if self.plan.guide is not None and abs(math.log(tidy / load)) > abs(math.log(factor)):
            return load * factor
        return tidy

    def _middle(self, good: float, bad: float) -> float:
        mid = math.sqrt(good * bad)
        if self.plan.closed_loop:
            return float(min(bad - 1, max(good + 1, round(mid))))
        tidy = _tidy(mid)
        return tidy if good < tidy < bad else mid


def _tidy(load: float) -> float:
    """A load rounded to a few significant digits: 141.4 req/s, not 141.42135623730951."""
    if load <= 0:
        return load
    digits = _SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(load))
    return round(load, max(digits, 0)) if digits >= 0 else float(round(load, digits))


# -- judging a measured rung --------------------------------------------------------------

@dataclass(frozen=True)
class RungCheck:
    """A measured rung judged twice, as the analysis judges it: is it a valid measurement
    (the point's verdict), and does it meet the SLO rule. It holds when both pass."""

    slo: RungJudgement
    valid: bool
    invalid_reasons: tuple[str, ...] = ()

    @property
    def holds(self) -> bool:
        return self.valid and self.slo.holds

    @property
    def reason(self) -> str | None:
        why = [] if self.valid else ["INVALID: " + "; ".join(self.invalid_reasons)]
        return "; ".join([*why, *([self.slo.reason] if self.slo.reason else [])]) or None

    @property
    def remeasure(self) -> bool:
        """Worth measuring again: not valid, and its numbers cannot tell holding from
        failing. A rung that met the SLO rule may owe it to luck, and one that failed on
        latency may owe it to the generator's late sends (latency is timed from the
        schedule). Failed requests, or a server that completed too little of what was sent,
        are the server's own failure whatever the generator did."""
        return not self.valid and not self.slo.server_failed

    def result(self, elapsed_s: float) -> RungResult:
        return RungResult(self.holds, elapsed_s, self.reason, self.slo.latency_at_slo_ms,
                          self.remeasure, self.valid)


def judge_records(arrays: Mapping[str, np.ndarray], *, started_ns: int, ended_ns: int,
                  offered: float, open_loop: bool, slo_percentile: float, slo_ms: float
                  ) -> RungJudgement:
    """Judge one measured rung from its per-request records, with the statistics the
    analysis computes (analysis.summary.summarize_point)."""
    summary = summarize_point(arrays["scheduled_ns"], arrays["sent_ns"], arrays["done_ns"],
                              arrays["status"], started_ns=started_ns, ended_ns=ended_ns,
                              open_loop=open_loop)
    return judge_summary(summary, arrays, started_ns=started_ns, ended_ns=ended_ns,
                         offered=offered, open_loop=open_loop, slo_percentile=slo_percentile,
                         slo_ms=slo_ms)


def judge_summary(summary: PointSummary, arrays: Mapping[str, np.ndarray], *, started_ns: int,
                  ended_ns: int, offered: float, open_loop: bool, slo_percentile: float,
                  slo_ms: float) -> RungJudgement:
    """`judge_records` on statistics already computed from the same records."""
    return judge_rung(offered=offered, achieved_rps=summary.throughput_rps,
                      latency_at_slo_ms=summary.percentile_ms(slo_percentile),
                      n_failed=summary.n_failed, slo_percentile=slo_percentile,
                      slo_ms=slo_ms, open_loop=open_loop,
                      sent_rps=sent_rate_rps(arrays["scheduled_ns"], started_ns, ended_ns,
                                             arrays["done_ns"]) if open_loop else None)
