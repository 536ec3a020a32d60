"""The simulator reproduces the order the real Airflow scheduler produced on the recorded
small mix (benchmarks/scheduling/results/mix36.json, made by benchmarks/scheduling/run.py):
same submissions, placements and measured task durations in, same per-worker order out."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from conftest import ROOT

from inferbench.scheduling.policies import Policy
from inferbench.scheduling.simulator import replay

RECORDED = ROOT / "benchmarks" / "scheduling" / "results" / "mix36.json"


def recorded_runs():
    data = json.loads(RECORDED.read_text())
    for name, res in data["policies"].items():
        decided = {d["run_id"]: datetime.fromisoformat(d["submitted_at"]).timestamp()
                   for d in res["decisions"]}
        records = [{**r, "decided_s": decided[r["run_id"]]} for r in res["records"]]
        yield pytest.param(Policy(name), data["args"], records, res["worker_orders"], id=name)


@pytest.mark.parametrize("policy, args, records, real_orders", list(recorded_runs()))
def test_simulator_replays_the_real_scheduler_order(policy, args, records, real_orders):
    simulated, gap_s = replay(records, args["workers"], policy, args["aging_rate"])
    assert 0 < gap_s < 10
    assert simulated == real_orders
