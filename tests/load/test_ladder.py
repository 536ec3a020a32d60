"""The ladder's decisions against a synthetic server whose capacity is known exactly (a rung
holds iff its load is at most the capacity), and the rung judgement on known records."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from analysis.capacity import MIN_ACHIEVED_RATIO
from inferbench.load.ladder import (
    Ladder,
    LadderEnd,
    LadderMode,
    LadderOutcome,
    LadderPlan,
    Phase,
    Rung,
    RungResult,
    judge_records,
    sent_rate_rps,
)
from inferbench.spec import MAX_CONCURRENCY, example_spec, parse_spec

CAPACITY = 137.0


def drive(plan: LadderPlan, holds: Callable[[float], bool] = lambda x: x <= CAPACITY,
          elapsed_s: Callable[[Rung], float] = lambda rung: 10.0,
          latency_ms: Callable[[float], float | None] = lambda x: None,
          ) -> tuple[LadderOutcome, list[Rung]]:
    """Run a ladder against a synthetic server; return its outcome and the rungs it ran."""
    ladder, ran = Ladder(plan), []
    for rung in ladder.rungs():
        ran.append(rung)
        ok = holds(rung.offered)
        ladder.report(RungResult(ok, elapsed_s(rung), None if ok else "too much",
                                 latency_ms(rung.offered)))
    return ladder.outcome, ran


def search(start: float, **over) -> LadderPlan:
    return LadderPlan(mode=LadderMode.SEARCH, loads=(start,), floor=1.0, **over)


@pytest.mark.parametrize("start", [1.0, 10.0, 100.0, 137.0, 500.0, 3000.0])
@pytest.mark.parametrize("precision_pct", [1.0, 5.0, 20.0])
def test_search_brackets_the_capacity_within_precision(start, precision_pct):
    out, ran = drive(search(start, precision_pct=precision_pct, max_rungs=100))
    assert out.end is LadderEnd.PRECISION and not out.bound
    assert out.last_good <= CAPACITY < out.first_bad
    assert (out.first_bad - out.last_good) / out.last_good <= precision_pct / 100
    assert out.first_bad_reason == "too much" and out.rungs == len(ran)
    # Climb (or descent) first, then only bisection; no load is measured twice.
    phases = [r.phase for r in ran]
    first_bisect = phases.index(Phase.BISECT) if Phase.BISECT in phases else len(phases)
    assert set(phases[:first_bisect]) == {Phase.GEOMETRIC}
    assert set(phases[first_bisect:]) <= {Phase.BISECT}
    assert len({r.offered for r in ran}) == len(ran)
    assert [r.index for r in ran] == list(range(len(ran)))


def test_search_path_from_a_low_start():
    # 10, 20, 40, 80, 160 (fails), then geometric means of the bracket: 113.1 holds,
    # 134.5 holds, 146.7 fails, 140.5 fails: (140.5 - 134.5) / 134.5 = 4.5 % <= 5 %.
    out, ran = drive(search(10.0))
    assert [(r.offered, r.phase.value) for r in ran] == [
        (10, "geometric"), (20, "geometric"), (40, "geometric"), (80, "geometric"),
        (160, "geometric"), (113.1, "bisect"), (134.5, "bisect"), (146.7, "bisect"),
        (140.5, "bisect")]
    assert (out.last_good, out.first_bad, out.rungs, out.elapsed_s) == (134.5, 140.5, 9, 90.0)


def test_search_from_above_the_capacity_goes_down_then_bisects():
    out, ran = drive(search(1000.0))
    assert [r.offered for r in ran[:4]] == [1000, 500, 250, 125]
    assert out.end is LadderEnd.PRECISION and out.last_good <= CAPACITY < out.first_bad


def test_search_stops_going_down_at_the_floor_when_nothing_holds():
    out, ran = drive(search(40.0), holds=lambda x: False)
    assert [r.offered for r in ran] == [40, 20, 10, 5, 2.5, 1.25, 1.0]  # floor 1 req/s
    assert out.end is LadderEnd.NOTHING_HOLDS
    assert (out.last_good, out.first_bad) == (None, 1.0)


def test_search_stops_going_down_when_latency_no_longer_falls():
    # The server's latency floor (50 ms) is above the SLO: a lower load cannot help, so the
    # descent ends once the SLO-percentile latency stops falling by 10 % per rung.
    out, ran = drive(search(400.0), holds=lambda x: False,
                     latency_ms=lambda x: 50.0 + x / 10)  # 90, 70, 60, 55 ms
    assert [r.offered for r in ran] == [400, 200, 100, 50]  # 55 is not 10 % below 60
    assert out.end is LadderEnd.NOTHING_HOLDS


def test_search_cap_is_a_bound():
    out, ran = drive(search(10_000.0, ceiling=50_000.0), holds=lambda x: True)
    assert [r.offered for r in ran] == [10_000, 20_000, 40_000, 50_000]
    assert out.end is LadderEnd.SEARCH_CAP and out.bound
    assert (out.last_good, out.first_bad) == (50_000, None)


def test_max_rungs_cuts_the_search_short_with_a_bound():
    out, ran = drive(search(10.0, max_rungs=6))
    assert len(ran) == 6 and out.end is LadderEnd.MAX_RUNGS and out.bound
    # 10 .. 160 then one bisection rung (113.1 holds): the bracket is what was reached.
    assert (out.last_good, out.first_bad) == (113.1, 160.0)


def test_max_family_s_lets_a_rung_start_only_if_it_fits():
    # Rungs take 10 s, the first 15 s (its warm-up): after 15 + 4 x 10 = 55 s another
    # 15 s rung (the longest so far) would end at 70 s > 60 s.
    out, ran = drive(search(10.0, max_family_s=60.0),
                     elapsed_s=lambda rung: 15.0 if rung.index == 0 else 10.0)
    assert len(ran) == 5 and out.end is LadderEnd.MAX_FAMILY_S and out.bound
    assert out.elapsed_s == 55.0
    # A single rung longer than the whole budget still runs: the first rung always does.
    out, ran = drive(search(10.0, max_family_s=5.0))
    assert len(ran) == 1 and out.end is LadderEnd.MAX_FAMILY_S


def test_closed_loop_search_lands_on_whole_clients():
    plan = LadderPlan(mode=LadderMode.SEARCH, loads=(1.0,), closed_loop=True, floor=1.0,
                      ceiling=1024.0, precision_pct=1.0, max_rungs=50)
    out, ran = drive(plan, holds=lambda c: c <= 13)
    assert [r.offered for r in ran[:5]] == [1, 2, 4, 8, 16]
    assert all(r.offered == int(r.offered) for r in ran)
    assert (out.last_good, out.first_bad, out.end) == (13, 14, LadderEnd.PRECISION)
    # A growth below 2 still adds at least one client per rung.
    out, ran = drive(LadderPlan(mode=LadderMode.SEARCH, loads=(1.0,), closed_loop=True,
                                growth=1.2, floor=1.0, ceiling=1024.0, max_rungs=50),
                     holds=lambda c: c <= 4)
    assert [r.offered for r in ran[:5]] == [1, 2, 3, 4, 5]


def test_list_mode_stops_at_the_first_failure_or_runs_all():
    loads = (50.0, 100.0, 150.0, 200.0)
    out, ran = drive(LadderPlan(mode=LadderMode.LIST, loads=loads))
    assert [(r.offered, r.phase) for r in ran] == [(50, Phase.LIST), (100, Phase.LIST),
                                                   (150, Phase.LIST)]
    assert (out.end, out.last_good, out.first_bad) == (LadderEnd.LIST_FAILED, 100, 150)
    out, ran = drive(LadderPlan(mode=LadderMode.LIST, loads=loads, stop_after_failure=False))
    assert [r.offered for r in ran] == list(loads)
    assert (out.end, out.last_good, out.first_bad) == (LadderEnd.LIST_END, 100, 150)
    out, ran = drive(LadderPlan(mode=LadderMode.LIST, loads=loads, max_rungs=2))
    assert len(ran) == 2 and out.end is LadderEnd.MAX_RUNGS


def test_single_mode_is_one_rung():
    out, ran = drive(LadderPlan(mode=LadderMode.SINGLE, loads=(500.0,)))
    assert ran == [Rung(0, 500.0, Phase.SINGLE)]
    assert (out.end, out.last_good, out.first_bad) == (LadderEnd.SINGLE, None, 500.0)
    assert not out.bound


def test_each_rung_needs_its_result_before_the_next():
    ladder = Ladder(search(10.0))
    rungs = ladder.rungs()
    next(rungs)
    with pytest.raises(RuntimeError, match="report"):
        next(rungs)
    with pytest.raises(RuntimeError, match="not ended"):
        _ = Ladder(search(10.0)).outcome
    with pytest.raises(RuntimeError, match="in flight"):
        Ladder(search(10.0)).report(RungResult(True, 1.0))


def spec(**over):
    base = example_spec().model_dump(mode="json")
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return parse_spec(base)


def test_plan_from_spec():
    single = LadderPlan.from_spec(example_spec())
    assert (single.mode, single.loads, single.closed_loop) == (LadderMode.SINGLE, (40.0,),
                                                              False)
    listed = LadderPlan.from_spec(spec(workload={"rate_rps": [10, 20, 40]}))
    assert (listed.mode, listed.loads) == (LadderMode.LIST, (10.0, 20.0, 40.0))
    found = LadderPlan.from_spec(spec(ladder={"mode": "search", "growth": 1.5,
                                              "precision_pct": 2, "max_rungs": 20}))
    assert (found.mode, found.loads, found.growth, found.precision_pct, found.max_rungs) == (
        LadderMode.SEARCH, (40.0,), 1.5, 2.0, 20)
    # The lowest rate worth a rung: 200 requests within max_duration_s 40 s.
    assert found.floor == 200 / 40
    closed = LadderPlan.from_spec(spec(workload={"arrival": "closed_loop", "concurrency": 2,
                                                 "rate_rps": None},
                                       ladder={"mode": "search"}))
    assert (closed.closed_loop, closed.loads, closed.floor, closed.ceiling) == (
        True, (2.0,), 1.0, float(MAX_CONCURRENCY))


# -- judging records ----------------------------------------------------------------------

def records(scheduled_s: np.ndarray, latency_s: np.ndarray, ok: np.ndarray | None = None
            ) -> dict[str, np.ndarray]:
    scheduled = (scheduled_s * 1e9).astype(np.int64)
    done = scheduled + (latency_s * 1e9).astype(np.int64)
    status = np.where(ok if ok is not None else np.ones(len(scheduled), bool), 200, 0
                      ).astype(np.int32)
    return {"scheduled_ns": scheduled, "sent_ns": scheduled,
            "done_ns": np.where(status == 200, done, -1), "status": status}


def test_judge_records_takes_the_achieved_rate_against_what_was_sent():
    # A Poisson schedule at a nominal 100 req/s that happened to send 92 requests in its
    # 1 s: a server that answered all of them in 2 ms kept up, though 92 < 95 % of 100.
    sched = np.linspace(0.0, 0.99, 92)
    arrays = records(sched, np.full(92, 0.002))
    judged = judge_records(arrays, started_ns=0, ended_ns=int(0.992e9), offered=100.0,
                           open_loop=True, slo_percentile=99, slo_ms=10)
    assert judged.holds, judged.reason
    assert judged.achieved_rps == pytest.approx(92 / 0.992)
    # The same sends answered ever later (a queue that grows): completions trail off.
    late = records(sched, np.linspace(0.002, 0.5, 92))
    judged = judge_records(late, started_ns=0, ended_ns=int(1.49e9), offered=100.0,
                           open_loop=True, slo_percentile=99, slo_ms=1000)
    assert not judged.holds and "achieved" in judged.reason
    assert judged.achieved_rps / 100 < MIN_ACHIEVED_RATIO
    # The SLO percentile, then failed requests, each named.
    slow = judge_records(arrays, started_ns=0, ended_ns=int(0.992e9), offered=100.0,
                         open_loop=True, slo_percentile=99, slo_ms=1)
    assert not slow.holds and slow.reason == "p99 2.0 ms > 1 ms"
    failed = records(sched, np.full(92, 0.002), ok=np.arange(92) != 5)
    judged = judge_records(failed, started_ns=0, ended_ns=int(0.992e9), offered=100.0,
                           open_loop=True, slo_percentile=99, slo_ms=10)
    assert (judged.holds, judged.reason) == (False, "1 failed requests")


def test_judge_records_closed_loop_has_no_achieved_rule():
    arrays = records(np.linspace(0.0, 1.0, 20), np.full(20, 0.05))
    judged = judge_records(arrays, started_ns=0, ended_ns=int(1.05e9), offered=4,
                           open_loop=False, slo_percentile=95, slo_ms=60)
    assert judged.holds and judged.latency_at_slo_ms == pytest.approx(50.0)


def test_sent_rate_is_taken_over_the_time_the_load_was_offered():
    sched = np.array([100, 300, 500, 700]) * 1_000_000  # ns, from a start at 0
    # Every answer came before the window's end: that end is where the offer stopped (the
    # next send was due at 1 s), so the rate is exact: 4 requests in 1 s.
    done = sched + 5_000_000
    assert sent_rate_rps(sched, 0, 1_000_000_000, done) == 4.0
    # Answers trailed past the offer: its end is the last send plus one mean gap (175 ms).
    late = sched + np.array([5, 5, 5, 900]) * 1_000_000
    assert sent_rate_rps(sched, 0, int(late.max()), late) == pytest.approx(4 / 0.875)
    # Without the window (the two-argument form), the same estimate.
    assert sent_rate_rps(sched, 0) == pytest.approx(4 / 0.875)
    assert sent_rate_rps(sched[:1], 0) is None


# -- rungs that were not valid measurements ------------------------------------------------

def drive_noisy(plan: LadderPlan, invalid: Callable[[Rung], bool]
                ) -> tuple[LadderOutcome, list[Rung]]:
    """The synthetic server, with the rungs `invalid` names not valid as measurements (their
    SLO reading is still the server's truth, so they are worth measuring again)."""
    ladder, ran = Ladder(plan), []
    for rung in ladder.rungs():
        ran.append(rung)
        bad = invalid(rung)
        ok = rung.offered <= CAPACITY and not bad
        ladder.report(RungResult(ok, 10.0, None if ok else "too much", None, remeasure=bad))
    return ladder.outcome, ran


def test_an_invalid_rung_is_measured_again_and_the_repeat_decides():
    first_of_40 = lambda r: r.offered == 40 and r.phase is Phase.GEOMETRIC  # noqa: E731
    out, ran = drive_noisy(search(10.0), first_of_40)
    clean, clean_ran = drive(search(10.0))
    assert [(r.offered, r.phase) for r in ran[2:4]] == [(40, Phase.GEOMETRIC),
                                                         (40, Phase.REPEAT)]
    # The invalid rung moved nothing: the same search follows, one rung longer.
    assert [r.offered for r in ran if r.phase is not Phase.REPEAT] == \
        [r.offered for r in clean_ran]
    assert (out.last_good, out.first_bad, out.rungs) == \
        (clean.last_good, clean.first_bad, clean.rungs + 1)


def test_a_repeat_that_is_not_valid_either_does_not_hold():
    # Every measurement at 80 req/s is invalid: 80 counts as failed, and the search
    # brackets between 40 and 80 instead of finding 137.
    out, ran = drive_noisy(search(10.0, precision_pct=20.0), lambda r: r.offered == 80)
    assert [(r.offered, r.phase.value) for r in ran[3:5]] == [(80, "geometric"),
                                                               (80, "repeat")]
    assert len([r for r in ran if r.offered == 80]) == 2
    assert out.last_good < 80 <= out.first_bad


def test_a_single_point_is_never_repeated():
    plan = LadderPlan(mode=LadderMode.SINGLE, loads=(50.0,))
    out, ran = drive_noisy(plan, lambda r: True)
    assert len(ran) == 1 and out.end is LadderEnd.SINGLE
    # What the load stage asks before it logs a rung, so its line does not promise a repeat.
    invalid = RungResult(False, 10.0, "INVALID", None, remeasure=True)
    assert not Ladder(plan).repeats(ran[0], invalid)
    listed = LadderPlan(mode=LadderMode.LIST, loads=(50.0,))
    assert Ladder(listed).repeats(Rung(0, 50.0, Phase.LIST), invalid)
    assert not Ladder(listed).repeats(Rung(1, 50.0, Phase.REPEAT), invalid)


def test_a_list_repeats_an_invalid_rung_before_it_stops():
    plan = LadderPlan(mode=LadderMode.LIST, loads=(50.0, 100.0, 200.0))
    out, ran = drive_noisy(plan, lambda r: r.offered == 100 and r.phase is Phase.LIST)
    assert [(r.offered, r.phase.value) for r in ran] == [
        (50, "list"), (100, "list"), (100, "repeat"), (200, "list")]
    assert (out.end, out.last_good, out.first_bad) == (LadderEnd.LIST_FAILED, 100, 200)


def test_repeats_count_against_max_rungs():
    out, ran = drive_noisy(search(10.0, max_rungs=3), lambda r: r.offered == 20)
    assert [r.phase.value for r in ran] == ["geometric", "geometric", "repeat"]
    assert out.end is LadderEnd.MAX_RUNGS and out.last_good == 10


@pytest.mark.parametrize(("failed_on", "valid", "holds", "remeasure"), [
    (None, True, True, False),
    ("latency", True, False, False),
    (None, False, False, True),          # held on the SLO rule, but perhaps by luck
    ("latency", False, False, True),     # late sends add to the measured latency
    ("throughput", False, False, False),  # the server fell behind: its own failure
    ("errors", False, False, False),
])
def test_rung_check_holds_only_when_valid_and_within_the_slo(failed_on, valid, holds, remeasure):
    from analysis.capacity import RungJudgement
    from inferbench.load.ladder import RungCheck

    slo = RungJudgement(100.0, 99.0, 5.0, 0, failed_on is None,
                        None if failed_on is None else f"{failed_on} rule", None, failed_on)
    check = RungCheck(slo, valid, () if valid else ("3.1 % of requests were sent late",))
    assert (check.holds, check.remeasure) == (holds, remeasure)
    if not valid:
        assert check.reason.startswith("INVALID: 3.1 % of requests were sent late")
    result = check.result(2.5)
    assert (result.holds, result.remeasure, result.reason) == (holds, remeasure, check.reason)


def test_the_descent_goes_on_below_rungs_that_were_not_valid():
    # 100 and 50 req/s: not valid, and their p99 did not fall (the generator's late sends, not
    # the server's floor): the descent continues to 25, which holds.
    ladder, ran = Ladder(search(100.0)), []
    for rung in ladder.rungs():
        ran.append(rung.offered)
        bad = rung.offered > 30
        ladder.report(RungResult(not bad, 5.0, "INVALID: late sends" if bad else None, 30.0,
                                 remeasure=False, valid=not bad))
    assert ran[:3] == [100, 50, 25] and ladder.outcome.last_good is not None


@pytest.mark.parametrize("precision_pct", [2.0, 5.0, 20.0])
def test_an_exact_guide_brackets_the_capacity_in_two_rungs(precision_pct):
    plan = search(10.0, precision_pct=precision_pct).guided(CAPACITY)
    out, ran = drive(plan)
    assert [r.offered > CAPACITY for r in ran] == [False, True]
    assert out.end is LadderEnd.PRECISION and out.rungs == 2
    assert out.last_good <= CAPACITY < out.first_bad


@pytest.mark.parametrize("error", [0.5, 0.8, 0.95, 1.05, 1.3, 2.0, 4.0])
@pytest.mark.parametrize("precision_pct", [5.0, 20.0])
def test_a_wrong_guide_still_brackets_the_capacity_in_fewer_rungs(error, precision_pct):
    guided, ran = drive(search(10.0, precision_pct=precision_pct, max_rungs=100)
                        .guided(CAPACITY * error))
    blind, blind_ran = drive(search(10.0, precision_pct=precision_pct, max_rungs=100))
    assert guided.end is LadderEnd.PRECISION
    assert guided.last_good <= CAPACITY < guided.first_bad
    assert (guided.first_bad - guided.last_good) / guided.last_good <= precision_pct / 100
    assert len(ran) <= len(blind_ran) + 1, ([r.offered for r in ran],
                                            [r.offered for r in blind_ran])


def test_a_guided_descent_does_not_stop_on_small_steps():
    # Latency falls by only 5 % per small step; the floor rule waits for full steps.
    out, ran = drive(search(10.0, precision_pct=5.0, max_rungs=100).guided(CAPACITY * 1.5),
                     latency_ms=lambda x: x)
    assert out.end is LadderEnd.PRECISION and out.last_good <= CAPACITY < out.first_bad


def test_guiding_leaves_other_plans_alone():
    assert search(10.0).guided(None).guide is None
    closed = LadderPlan(mode=LadderMode.SEARCH, loads=(4.0,), closed_loop=True)
    assert closed.guided(50.0) is closed
    listed = LadderPlan(mode=LadderMode.LIST, loads=(1.0, 2.0))
    assert listed.guided(50.0) is listed
    assert search(10.0).guided(137.0).start == pytest.approx(137.0 / 1.05 ** 0.5, rel=1e-3)
