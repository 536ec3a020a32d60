"""The scheduling policies through the real Airflow scheduler (embedded PostgreSQL,
scheduler, dag-processor, api-server, LocalExecutor): placement and order checked from the
task instances' recorded timestamps and pools, and no two jobs overlapping on a worker.
The jobs are the scheduling benchmark's stand-in DAG, driven by its harness
(benchmarks/scheduling/), which records each decision from the job's task."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import load_harness

from inferbench.netutil import free_port
from inferbench.scheduling.jobmix import job_mix
from inferbench.scheduling.observe import overlaps
from inferbench.scheduling.policies import Policy, WorkerLoad, place
from inferbench.scheduling.workers import HOLD_POOL, worker_names

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TIME_SCALE = 0.02  # jobs of 1-6 s
AGING_RATE = 0.1  # what harness.start_stack gives the scheduler
WAITING_MARGIN_S = 3.0  # a job counts as waiting once its run is this old (scheduler loops)


@pytest.fixture
def sched_home(monkeypatch):
    for key in [k for k in os.environ if k.startswith("AIRFLOW__") or k.startswith("INFERBENCH_")
                ] + ["AIRFLOW_HOME"]:
        monkeypatch.delenv(key, raising=False)
    # Not under pytest's tmp_path: a later pytest session resets /tmp/pytest-of-<user> to
    # 0700, and PostgreSQL's own user could then no longer reach its data to stop.
    root = Path(tempfile.mkdtemp(prefix="inferbench-sched-"))
    home = root / "home"
    yield home
    from inferbench.embedded.airflow import stop_airflow
    from inferbench.embedded.postgres import stop_postgres

    stop_airflow(home)
    stop_postgres(home)
    shutil.rmtree(root, ignore_errors=True)


def check_order(records, weight_of) -> int:
    """On each worker, a job that started never had a higher-weight job of the same worker
    waiting behind it. Returns how many (started, waiting) pairs were compared."""
    compared = 0
    for j in records:
        for k in records:
            if (k is not j and k.worker == j.worker and k.start_s > j.start_s
                    and k.submitted_s < j.start_s - WAITING_MARGIN_S):
                assert weight_of[k.label] <= weight_of[j.label], (j, k)
                compared += 1
    return compared


def test_policies_place_and_order_through_the_real_scheduler(sched_home):
    harness = load_harness()
    workers = worker_names(2)
    port = free_port()
    previous = None  # round-robin continues from the last decision, whatever its policy
    for policy, n_jobs, seed in ((Policy.QA_SJF, 8, 11), (Policy.RR_FCFS, 6, 12)):
        url = harness.start_stack(sched_home, port, policy.value, len(workers),
                                  aging_rate=AGING_RATE)
        jobs = job_mix(n_jobs, seed=seed, time_scale=TIME_SCALE)
        records = harness.run_mix(url, jobs, TIME_SCALE, timeout_s=300, say=lambda _m: None)
        decided = harness.decisions([r.run_id for r in records])
        assert [d["policy"] for d in decided] == [policy.value] * n_jobs
        by_run = {d["run_id"]: d for d in decided}
        # Airflow ran every job in the pool the policy chose.
        assert {r.label: r.worker for r in records} == {
            r.label: by_run[r.run_id]["worker"] for r in records}
        assert overlaps(records) == []
        # Placement: each decision is what the policy gives for what it saw.
        for d in decided:
            loads = {w: WorkerLoad(int(n), work) for w, (n, work) in d["loads"].items()}
            assert place(policy, workers, loads, previous) == d["worker"], d
            previous = d["worker"]
        if policy is Policy.QA_SJF:
            # Submitted together: the first jobs go to distinct idle workers.
            assert {d["worker"] for d in decided[:len(workers)]} == set(workers)
            assert all(n == 0 for n, _ in decided[0]["loads"].values())
        else:
            start = workers.index(decided[0]["worker"])
            assert [d["worker"] for d in decided] == [
                workers[(start + i) % len(workers)] for i in range(n_jobs)]
        # Order: the weight Airflow used (from the task instance) decides who goes next.
        weight = {r.label: r.priority_weight for r in records}
        assert weight == {r.label: by_run[r.run_id]["priority_weight"] for r in records}
        # How many jobs were seen waiting depends on how fast the host triggers and runs
        # them; the check must not be vacuous, so at least one pair is compared.
        assert check_order(records, weight) >= 1, json.dumps([r.__dict__ for r in records])
        if policy is Policy.QA_SJF:
            # Shorter predicted, higher weight, after aging: a key is the predicted length
            # plus AGING_RATE s per s between its busy period's start and its submission.
            # The triggers spread over seconds on a loaded host, so the keys, not the bare
            # predictions, give the order (two close predictions may swap).
            for d in decided:
                since_s = (d["submitted_at"] - d["key_ref_at"]).total_seconds()
                assert d["order_key"] == pytest.approx(
                    d["predicted_s"] + AGING_RATE * since_s, abs=0.01), d
            by_key = sorted(records, key=lambda r: by_run[r.run_id]["order_key"])
            assert all(a.priority_weight >= b.priority_weight
                       for a, b in zip(by_key, by_key[1:], strict=False))
        else:  # submitted earlier, higher weight
            by_sub = sorted(records, key=lambda r: r.submitted_s)
            # (>=: two triggers within the 0.01 s resolution would tie)
            assert all(a.priority_weight >= b.priority_weight
                       for a, b in zip(by_sub, by_sub[1:], strict=False))


def test_a_job_holds_its_worker_between_its_tasks_through_the_real_scheduler(sched_home):
    """Jobs of three tasks in a row, all triggered at once on one worker: each runs whole
    before the next starts (the others wait in the hold pool), in the policy's order. With
    the worker's pool alone, a waiting job's first task took the slot between two tasks of
    the running one."""
    from inferbench.scheduling.jobmix import Job
    from inferbench.spec import example_spec, parse_spec

    harness = load_harness()
    url = harness.start_stack(sched_home, free_port(), Policy.QA_SJF.value, 1)
    jobs = [Job(f"steps{i}", parse_spec({**example_spec().model_dump(mode="json"),
                                         "min_duration_s": d, "max_duration_s": 120})
                .model_dump(mode="json"), 0.0, 1.5)
            for i, d in enumerate((30, 10, 20, 5))]
    records = harness.run_mix(url, jobs, 0.05, timeout_s=300, say=lambda _m: None,
                              dag_id=harness.STEPS_DAG_ID)
    assert {r.worker for r in records} == {"cpu-worker-0"}
    assert overlaps(records) == [], json.dumps([r.__dict__ for r in records])
    # The first job took the free worker at once; the others went shortest first.
    by_start = sorted(records, key=lambda r: r.start_s)
    assert by_start[0].label == "steps0"
    assert [r.label for r in by_start[1:]] == ["steps3", "steps1", "steps2"]


def _started(client, dag_id: str, run_id: str) -> bool:
    return any(ti["start_date"] for ti in client.task_instances(dag_id, run_id))


def test_work_stealing_moves_waiting_jobs_to_a_freed_worker_through_the_real_scheduler(
        sched_home):
    """ws_sjf in the real scheduler (the listener registered by the plugin entry point):
    a job predicted long that runs short frees its worker while two short jobs wait behind
    a job predicted short that runs long; the freed worker takes both."""
    import time

    from inferbench.airflow_api import AirflowClient
    from inferbench.scheduling.jobmix import Job
    from inferbench.spec import example_spec, parse_spec

    harness = load_harness()
    workers = worker_names(2)
    url = harness.start_stack(sched_home, free_port(), Policy.WS_SJF.value, len(workers))
    client = AirflowClient(url)
    dag_id = harness.DAG_ID
    client.unpause(dag_id)
    scale = 0.05

    def job(label: str, min_duration_s: float, sleep_s: float) -> Job:
        """A job the predictor sees as `min_duration_s` per point (4 points of the example
        spec), that holds its worker for `sleep_s`."""
        spec = parse_spec({**example_spec().model_dump(mode="json"),
                           "min_duration_s": min_duration_s, "max_duration_s": 120})
        return Job(label, spec.model_dump(mode="json"), 0.0, sleep_s)

    def trigger(j: Job) -> str:
        client.trigger(dag_id, f"ws_{j.label}", j.conf(scale))
        return f"ws_{j.label}"

    # Predicted (x scale) 22.6 s and 4.6 s; the later ones 3.6 s each, so both queue behind
    # the job predicted short.
    first = [trigger(job("long_pred_short_run", 100, 8)),
             trigger(job("short_pred_long_run", 10, 40))]
    deadline = time.monotonic() + 120
    while not all(_started(client, dag_id, r) for r in first):
        assert time.monotonic() < deadline, "the first two jobs did not start"
        time.sleep(0.5)
    later = [trigger(job(f"short{i}", 2, 1)) for i in range(2)]
    runs = first + later
    deadline = time.monotonic() + 300
    while any(client.get_run(dag_id, r)["state"] not in ("success", "failed")
              for r in runs):
        assert time.monotonic() < deadline, "the jobs did not finish"
        time.sleep(1)
    pools = {r: {ti["pool"] for ti in client.task_instances(dag_id, r)} for r in runs}
    decided = {d["run_id"]: d for d in harness.decisions(runs)}
    freed, busy = (decided[r]["worker"] for r in first)
    assert freed != busy
    for r in later:
        # Placed at trigger behind the job predicted short (least queued work) ...
        loads = {w: WorkerLoad(int(n), work) for w, (n, work) in decided[r]["loads"].items()}
        assert place(Policy.WS_SJF, workers, loads, None) == busy, decided[r]
        # ... then moved to the freed worker, where it ran and recorded the move.
        assert pools[r] == {freed} and decided[r]["worker"] == freed, (pools, decided[r])


def test_a_run_marked_failed_by_hand_hands_its_worker_on_through_the_real_scheduler(
        sched_home):
    """A user stops a long benchmark from the UI or the REST API ("mark as failed"): the
    job waiting for its worker gets the worker then, not when the stopped job's tasks would
    have ended. The API server, not the scheduler, ends such a run, and calls the same
    run-end listener."""
    import time

    from inferbench.airflow_api import AirflowClient
    from inferbench.scheduling.jobmix import Job
    from inferbench.spec import example_spec

    harness = load_harness()
    url = harness.start_stack(sched_home, free_port(), Policy.QA_SJF.value, 1)
    client = AirflowClient(url)
    dag_id = harness.DAG_ID
    client.unpause(dag_id)
    conf = example_spec().model_dump(mode="json")
    long_run, waiting = "by_hand_long", "by_hand_waiting"
    client.trigger(dag_id, long_run, Job("long", conf, 0.0, 600).conf(1.0))
    deadline = time.monotonic() + 120
    while not _started(client, dag_id, long_run):
        assert time.monotonic() < deadline, "the long job did not start"
        time.sleep(0.5)
    client.trigger(dag_id, waiting, Job("waiting", conf, 0.0, 1).conf(1.0))
    time.sleep(WAITING_MARGIN_S)
    pools = {ti["pool"] for ti in client.task_instances(dag_id, waiting)}
    assert pools == {HOLD_POOL}, pools
    client.set_run_state(dag_id, long_run, "failed")
    stopped = time.monotonic()
    state = client.wait_for_run(dag_id, waiting, timeout_s=120)
    assert state == "success", state
    assert time.monotonic() - stopped < 120  # the long job would have held it 600 s
    pools = {ti["pool"] for ti in client.task_instances(dag_id, waiting)}
    assert pools == {"cpu-worker-0"}, pools
