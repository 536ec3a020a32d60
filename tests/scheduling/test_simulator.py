"""The simulator on cases with known answers, and at scale."""

from __future__ import annotations

import random

from inferbench.scheduling.observe import jct_stats
from inferbench.scheduling.policies import KEY_EPOCH, Policy
from inferbench.scheduling.simulator import SimJob, orders, simulate

T0 = KEY_EPOCH + 1000.0


def jobs(*lengths: float) -> list[SimJob]:
    return [SimJob(f"j{i}", T0, s, s) for i, s in enumerate(lengths)]


def test_one_worker_sjf_vs_fcfs_exact():
    mix = jobs(5, 1, 3)
    sjf = simulate(mix, 1, Policy.RR_SJF, gap_s=0, eligible_delay_s=0)
    assert orders(sjf) == {"cpu-worker-0": ["j1", "j2", "j0"]}
    assert sorted(r.jct_s for r in sjf) == [1, 4, 9]
    fcfs = simulate(mix, 1, Policy.RR_FCFS, gap_s=0, eligible_delay_s=0)
    assert orders(fcfs) == {"cpu-worker-0": ["j0", "j1", "j2"]}
    assert sorted(r.jct_s for r in fcfs) == [5, 6, 9]


def test_gap_and_eligibility_delay():
    res = simulate(jobs(2, 2), 1, Policy.RR_FCFS, gap_s=1.0, eligible_delay_s=0.5)
    assert [(r.start_s - T0, r.end_s - T0) for r in res] == [(0.5, 2.5), (3.5, 5.5)]


def test_placement_queue_aware_vs_round_robin():
    mix = jobs(10, 1, 1, 1)
    qa = {r.label: r.worker for r in simulate(mix, 2, Policy.QA_SJF, gap_s=0)}
    assert qa == {"j0": "cpu-worker-0", "j1": "cpu-worker-1", "j2": "cpu-worker-1",
                  "j3": "cpu-worker-1"}
    rr = {r.label: r.worker for r in simulate(mix, 2, Policy.RR_FCFS, gap_s=0)}
    assert rr == {"j0": "cpu-worker-0", "j1": "cpu-worker-1", "j2": "cpu-worker-0",
                  "j3": "cpu-worker-1"}


def test_work_stealing_takes_the_shortest_waiting_job_when_a_worker_frees():
    """Placed at submission by predicted work, then mispredicted: j0 was predicted long and
    ran short, so cpu-worker-0 frees first; under ws_sjf it takes the shortest job waiting
    behind j1, then the next; under qa_sjf it idles while they wait."""
    later = T0 + 0.5  # j0 and j1 have started: j2 and j3 queue behind j1 (less work left)
    mix = [SimJob("j0", T0, 20, 1), SimJob("j1", T0, 9, 9), SimJob("j2", later, 4, 4),
           SimJob("j3", later, 2, 2)]
    qa = simulate(mix, 2, Policy.QA_SJF, gap_s=0, eligible_delay_s=0)
    assert orders(qa) == {"cpu-worker-0": ["j0"], "cpu-worker-1": ["j1", "j3", "j2"]}
    ws = simulate(mix, 2, Policy.WS_SJF, gap_s=0, eligible_delay_s=0)
    assert orders(ws) == {"cpu-worker-0": ["j0", "j3", "j2"], "cpu-worker-1": ["j1"]}
    assert sum(r.jct_s for r in qa) == 1 + 9 + 10.5 + 14.5
    assert sum(r.jct_s for r in ws) == 1 + 9 + 2.5 + 6.5


def test_replayed_placements_are_kept():
    mix = jobs(3, 3, 3)
    res = simulate(mix, 2, Policy.QA_SJF, placements={"j0": "cpu-worker-1", "j1": "cpu-worker-1",
                                                      "j2": "cpu-worker-1"})
    assert {r.worker for r in res} == {"cpu-worker-1"}


def test_at_scale_queue_aware_sjf_beats_round_robin_fcfs():
    """3000 heavy-tailed jobs on 100 workers, Poisson arrivals at ~90 % load."""
    rng = random.Random(7)
    t, mix = T0, []
    for i in range(3000):
        length = min(600.0, 20 * rng.paretovariate(1.5))
        t += rng.expovariate(100 * 0.9 / 60.0)  # mean length ~60 s
        mix.append(SimJob(f"j{i}", t, length, length * rng.lognormvariate(0, 0.2)))
    mean = {p: jct_stats([r.jct_s for r in simulate(mix, 100, p)])["mean_s"] for p in Policy}
    assert len({r.label for r in simulate(mix, 100, Policy.QA_SJF)}) == 3000
    assert mean[Policy.QA_SJF] < mean[Policy.RR_SJF] < mean[Policy.RR_FCFS]


def test_a_held_back_worker_starts_the_best_job_waiting_then():
    """The replay's `available_from`: both jobs wait for the worker, so SJF runs the shorter
    one first although the longer one was submitted (and eligible) earlier."""
    mix = [SimJob("long", T0, 5, 5), SimJob("short", T0 + 0.5, 1, 1)]
    res = simulate(mix, 1, Policy.RR_SJF, gap_s=0, eligible_delay_s=0,
                   available_from={"cpu-worker-0": T0 + 2})
    assert orders(res) == {"cpu-worker-0": ["short", "long"]}
    assert [(r.label, r.start_s - T0) for r in res] == [("short", 2.0), ("long", 3.0)]
