"""The cluster policy inside real Airflow (its ORM on the test session's SQLite metadata DB,
runs created the way the REST trigger creates them) and the results DB on a real
PostgreSQL: placement and weights on the task instances, the decision kept in an Airflow
Variable while its run is active, and recorded in the results DB by the run's own task.

The stand-in job DAG of the scheduling benchmark (benchmarks/scheduling/dags) is the DAG:
one task, so each run is one job."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, load_harness
from sqlalchemy import select

from inferbench.scheduling.workers import HOLD_POOL

pytestmark = pytest.mark.integration

STANDIN_DAGS = ROOT / "benchmarks" / "scheduling" / "dags"
DAG_ID = load_harness().DAG_ID
TWO_STEP_ID = "sched_two_step"  # a DAG of two tasks, written by a test
WORKERS = ("cpu-worker-0", "cpu-worker-1")


@pytest.fixture(scope="module")
def standin_dag():
    """The stand-in DAG, parsed and written to the metadata DB (as the dag-processor would)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.utils import db as airflow_db

    airflow_db.initdb()
    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(STANDIN_DAGS))
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags[DAG_ID]


@pytest.fixture
def policy_installed(standin_dag, inferbench_env, monkeypatch):
    """Our hook as Airflow's task_instance_mutation_hook (what airflow_local_settings.py
    does in a deployment), scheduling the stand-in DAG over two worker pools."""
    import airflow.models.taskinstance
    import airflow.settings
    from airflow.models.dagrun import DagRun
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    from operators import scheduling

    monkeypatch.setattr(airflow.settings, "task_instance_mutation_hook",
                        scheduling.task_instance_mutation_hook)
    monkeypatch.setattr(airflow.models.taskinstance, "task_instance_mutation_hook",
                        scheduling.task_instance_mutation_hook)
    monkeypatch.setenv("AIRFLOW__INFERBENCH__SCHED_DAGS", DAG_ID)
    monkeypatch.setenv("AIRFLOW__INFERBENCH__SCHED_POLICY", "qa_sjf")
    monkeypatch.setenv("AIRFLOW__INFERBENCH__SCHED_AGING_RATE", "0.1")

    def clean():
        with create_session() as session:
            session.execute(delete(DagRun).where(DagRun.dag_id.in_([DAG_ID, TWO_STEP_ID])))
            session.execute(delete(Variable).where(
                Variable.key.startswith(scheduling.DECISION_VARIABLE_PREFIX)))
            session.execute(delete(Pool).where(Pool.pool.in_([*WORKERS, HOLD_POOL])))

    clean()
    for name in WORKERS:
        Pool.create_or_update_pool(name, 1, f"test {name}", include_deferred=False)
    Pool.create_or_update_pool(HOLD_POOL, 0, "test hold pool", include_deferred=False)
    yield scheduling
    clean()


def conf(time_scale: float, sleep_s: float = 0.0) -> dict:
    from inferbench.spec import example_spec

    return {"spec": example_spec().model_dump(mode="json"), "sleep_s": sleep_s,
            "time_scale": time_scale, "label": ""}


def trigger(run_id: str, time_scale: float):
    """A run created as the REST API's trigger creates it (one transaction, committed)."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    trigger_dag(DAG_ID, triggered_by=DagRunTriggeredByType.TEST, run_id=run_id,
                conf=conf(time_scale))


def placed(session, run_id: str) -> tuple[str, str, int]:
    from airflow.models.taskinstance import TaskInstance as TI

    ti = session.scalars(select(TI).where(TI.dag_id == DAG_ID, TI.run_id == run_id)).one()
    return ti.pool, ti.queue, ti.priority_weight


def kept(session, scheduling, run_id: str, dag_id: str = DAG_ID):
    """The decision the hook keeps for the run (its Airflow Variable)."""
    from airflow.models.variable import Variable

    from inferbench.scheduling.decisions import Decision

    var = session.scalars(select(Variable).where(
        Variable.key == scheduling.decision_key(dag_id, run_id))).one_or_none()
    return None if var is None else Decision.from_json(var.val)


def decision_variables(session, scheduling) -> int:
    from airflow.models.variable import Variable

    return len(session.scalars(select(Variable.key).where(
        Variable.key.startswith(scheduling.DECISION_VARIABLE_PREFIX))).all())


def test_runs_are_placed_weighted_and_their_decisions_kept_in_airflow(policy_installed):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    scheduling = policy_installed
    trigger("a", 1.0)  # the longest job
    trigger("b", 0.5)
    trigger("c", 0.1)  # the shortest
    with create_session() as session:
        got = {r: kept(session, scheduling, r) for r in "abc"}
        # queue-aware: a takes cpu-worker-0; b the idle cpu-worker-1; c the one with less queued
        # (predicted) work, cpu-worker-1 (b is half as long as a)
        assert [got[r].worker for r in "abc"] == ["cpu-worker-0", "cpu-worker-1", "cpu-worker-1"]
        assert got["b"].loads == {"cpu-worker-0": [1, pytest.approx(got["a"].predicted_s,
                                                                    abs=1e-3)],
                                  "cpu-worker-1": [0, 0.0]}
        assert got["b"].predicted_s == pytest.approx(got["a"].predicted_s / 2)
        # shortest predicted first (keys share the busy period of a)
        assert got["a"].key_ref_s == got["b"].key_ref_s == got["c"].key_ref_s
        assert got["c"].priority_weight > got["b"].priority_weight > got["a"].priority_weight
        # Airflow carries each decision on the run's task instance: pool, queue, weight;
        # c waits in the hold pool while b holds its worker.
        assert not got["a"].held and not got["b"].held and got["c"].held
        for r in "ab":
            assert placed(session, r) == (got[r].worker, got[r].worker,
                                          got[r].priority_weight)
        assert placed(session, "c") == (HOLD_POOL, got["c"].worker, got["c"].priority_weight)

        # Re-applied when Airflow refreshes a task instance (clearing, a DAG change): the
        # kept decision, not a new one, whatever is active by then.
        dr = session.scalars(select(DagRun).where(DagRun.dag_id == DAG_ID,
                                                  DagRun.run_id == "c")).one()
        ti = dr.get_task_instances(session=session)[0]
        ti.refresh_from_task(standin_task(), dag_run=dr)
        assert (ti.pool, ti.queue, ti.priority_weight) == placed(session, "c")
        assert decision_variables(session, scheduling) == 3

        # a ends: the next decision sees cpu-worker-0 idle and deletes a's Variable.
        a_run = session.scalars(select(DagRun).where(DagRun.dag_id == DAG_ID,
                                                     DagRun.run_id == "a")).one()
        a_run.set_state(DagRunState.SUCCESS)
    trigger("d", 1.0)
    with create_session() as session:
        d = kept(session, scheduling, "d")
        assert d.worker == "cpu-worker-0" and d.loads["cpu-worker-0"] == [0, 0.0]
        assert d.loads["cpu-worker-1"][0] == 2
        assert kept(session, scheduling, "a") is None
        assert decision_variables(session, scheduling) == 3  # b, c, d
        assert placed(session, "d") == ("cpu-worker-0", "cpu-worker-0", d.priority_weight)


def standin_task():
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session

    with create_session() as session:
        return DBDagBag().get_latest_version_of_dag(DAG_ID, session=session).get_task("work")


def test_round_robin_continues_after_the_last_placed_run(policy_installed, monkeypatch):
    from airflow.utils.session import create_session

    monkeypatch.setenv("AIRFLOW__INFERBENCH__SCHED_POLICY", "rr_fcfs")
    runs = ("r0", "r1", "r2", "r3", "r4")  # from r2 on, each waits for its worker
    for r in runs:
        trigger(r, 0.1)
    with create_session() as session:
        workers = [kept(session, policy_installed, r).worker for r in runs]
        weights = [placed(session, r)[2] for r in runs]
        assert [placed(session, r)[0] for r in runs[2:]] == [HOLD_POOL] * 3
    start = WORKERS.index(workers[0])
    assert workers == [WORKERS[(start + i) % 2] for i in range(len(runs))]
    assert weights == sorted(weights, reverse=True)  # first come, first served


def test_the_task_records_the_decision_in_the_results_db(policy_installed, standin_dag,
                                                          db_url):
    """dag.test runs the stand-in's task for real: it reads the decision the hook kept and
    writes it to the results DB, as every stage task of a benchmark run does."""
    from airflow.utils.session import create_session

    from inferbench import perfdb
    from inferbench.scheduling.store import stored

    dagrun = standin_dag.test(run_conf=conf(0.01))
    assert dagrun.state == "success"
    with create_session() as session:
        want = kept(session, policy_installed, dagrun.run_id)
        pool = placed(session, dagrun.run_id)[0]
    assert want is not None and pool == want.worker
    with perfdb.engine(db_url).connect() as conn:
        got = stored(conn, DAG_ID, dagrun.run_id)
    assert got is not None
    assert (got.worker, got.policy, got.priority_weight, got.loads) == (
        want.worker, want.policy, want.priority_weight, want.loads)
    assert got.predicted_s == want.predicted_s
    assert got.submitted_s == pytest.approx(want.submitted_s, abs=1e-6)


def test_no_decision_for_dags_the_policy_does_not_schedule(policy_installed, monkeypatch):
    from airflow.utils.session import create_session

    monkeypatch.setenv("AIRFLOW__INFERBENCH__SCHED_DAGS", "inferbench_benchmark")
    trigger("plain", 1.0)
    with create_session() as session:
        assert kept(session, policy_installed, "plain") is None
        assert placed(session, "plain")[0] == "default_pool"


TWO_STEP = f'''
from airflow.sdk import DAG, task

with DAG(dag_id="{TWO_STEP_ID}", schedule=None) as dag:
    @task
    def first():
        return [1, 2]

    @task
    def each(x):
        return x

    each.expand(x=first())
'''


def test_every_task_of_a_run_shares_its_decision_later_ones_boosted(policy_installed,
                                                                     monkeypatch, tmp_path):
    """A run of several tasks, one of them mapped over its upstream's output (expanded by
    the scheduler loop once `first` has run): one decision (the first task instance
    decides, the others find it, in the same transaction or later), one worker, and the
    later tasks outrank every waiting job's first task."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session

    from inferbench.scheduling.policies import CONTINUATION_BOOST, WEIGHT_BASE

    (tmp_path / "two_step.py").write_text(TWO_STEP)
    bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    monkeypatch.setenv("AIRFLOW__INFERBENCH__SCHED_DAGS", f"{DAG_ID},{TWO_STEP_ID}")
    with create_session() as session:
        before = decision_variables(session, policy_installed)
    dagrun = bag.dags[TWO_STEP_ID].test(run_conf=conf(0.1))
    assert dagrun.state == "success"
    with create_session() as session:
        tis = {(ti.task_id, ti.map_index): ti for ti in session.scalars(
            select(TI).where(TI.dag_id == TWO_STEP_ID, TI.run_id == dagrun.run_id))}
        assert decision_variables(session, policy_installed) == before + 1
        d = kept(session, policy_installed, dagrun.run_id, TWO_STEP_ID)
    assert set(tis) == {("first", -1), ("each", 0), ("each", 1)}
    assert {ti.pool for ti in tis.values()} == {ti.queue for ti in tis.values()} == {d.worker}
    assert tis[("first", -1)].priority_weight == d.priority_weight <= WEIGHT_BASE
    assert tis[("each", 0)].priority_weight == tis[("each", 1)].priority_weight == (
        d.priority_weight + CONTINUATION_BOOST)


def test_a_conf_the_policy_cannot_place_neither_fails_the_trigger_nor_the_scheduler(
        policy_installed, caplog):
    """A conf that passes the params' schema but not the spec's cross-field checks: the
    hook must not raise (in the scheduler's loop that would fail on the run again and
    again). The run is created, placed on the first worker at the lowest weight, and the
    reason is logged; its first stage then refuses the spec."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType

    bad = conf(1.0)
    bad["spec"] = {**bad["spec"], "min_duration_s": 30, "max_duration_s": 10}
    trigger_dag(DAG_ID, triggered_by=DagRunTriggeredByType.TEST, run_id="bad-conf", conf=bad)
    with create_session() as session:
        assert placed(session, "bad-conf") == ("cpu-worker-0", "cpu-worker-0", 1)
        assert kept(session, policy_installed, "bad-conf") is None
    assert any("no scheduling decision" in r.getMessage() and "max_duration_s" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_a_gpu_run_goes_only_to_a_gpu_worker_and_is_refused_at_trigger_without_one(
        policy_installed):
    """Hardware classes: with CPU workers only, a GPU spec has no worker (the trigger check
    names the reason; the hook places it by default). Once a GPU worker's pool exists, GPU
    runs go there and nowhere else, and CPU runs keep to the CPU workers."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType
    from sqlalchemy import delete

    from operators.trigger_check import conf_problem, worker_problem

    def gpu_conf() -> dict:
        gpu = conf(0.1)
        gpu["spec"] = {**gpu["spec"], "hardware": "gpu:1"}
        return gpu

    problem = worker_problem("gpu:1")
    assert "hardware 'gpu:1' needs a GPU worker" in problem and "cpu-worker-0" in problem
    assert "fix: add a gpu-worker-<n> worker" in problem
    assert worker_problem("cpu") is None
    body = {"conf": {"hardware": "gpu", "platforms": ["onnxruntime"], "formats": ["onnx"]}}
    assert "needs a GPU worker" in conf_problem(json.dumps(body).encode())

    Pool.create_or_update_pool("gpu-worker-0", 1, "test GPU worker", include_deferred=False)
    try:
        assert worker_problem("gpu:1") is None
        for run_id, run_conf in (("gpu-a", gpu_conf()), ("cpu-a", conf(0.1)),
                                 ("gpu-b", gpu_conf()), ("cpu-b", conf(0.1))):
            trigger_dag(DAG_ID, triggered_by=DagRunTriggeredByType.TEST, run_id=run_id,
                        conf=run_conf)
        with create_session() as session:
            pools = {r: placed(session, r)[0] for r in ("gpu-a", "gpu-b", "cpu-a", "cpu-b")}
            gpu_decision = kept(session, policy_installed, "gpu-b")
        assert pools["gpu-a"] == "gpu-worker-0"
        # gpu-worker-0 is busy, but the only one: gpu-b waits for it
        assert (gpu_decision.worker, gpu_decision.held, pools["gpu-b"]) == (
            "gpu-worker-0", True, HOLD_POOL)
        assert {pools["cpu-a"], pools["cpu-b"]} == set(WORKERS)
        assert set(gpu_decision.loads) == {"gpu-worker-0"}  # it saw only its own class
    finally:
        with create_session() as session:
            session.execute(delete(Pool).where(Pool.pool == "gpu-worker-0"))


def _run(session, run_id: str):
    from airflow.models.dagrun import DagRun

    return session.scalars(select(DagRun).where(DagRun.dag_id == DAG_ID,
                                                DagRun.run_id == run_id)).one()


def _set_task_state(session, run_id: str, state: str) -> None:
    from airflow.models.taskinstance import TaskInstance as TI

    session.scalars(select(TI).where(TI.dag_id == DAG_ID, TI.run_id == run_id)).one() \
        .state = state


def _end(session, run_id: str, state: str = "success"):
    """The run's task and the run itself ended, as the scheduler ends them."""
    _set_task_state(session, run_id, state)
    run = _run(session, run_id)
    run.set_state(state)
    return run


def test_a_run_waits_whole_in_the_hold_pool_until_its_worker_is_handed_to_it(
        policy_installed, monkeypatch):
    """One job at a time per worker: runs placed on a busy worker wait in the hold pool;
    when the run holding the worker ends (successful or failed), the worker goes to the
    policy's next waiting run (decision and task instances moved together, in the ending
    transaction). qa_sjf hands a worker only its own waiting runs; ws_sjf lets a freed
    worker take the first run waiting on a busy one."""
    from airflow.utils.session import create_session

    scheduling = policy_installed
    trigger("a", 1.0)  # cpu-worker-0 (idle)
    trigger("b", 0.3)  # cpu-worker-1 (idle)
    trigger("c", 0.5)  # cpu-worker-1: 0.3 of queued work there against 1.0
    trigger("d", 0.4)  # cpu-worker-1: 0.8 against 1.0
    with create_session() as session:
        got = {r: kept(session, scheduling, r) for r in "abcd"}
        assert [got[r].worker for r in "abcd"] == ["cpu-worker-0"] + ["cpu-worker-1"] * 3
        assert [got[r].held for r in "abcd"] == [False, False, True, True]
        assert [placed(session, r)[0] for r in "abcd"] == [
            "cpu-worker-0", "cpu-worker-1", HOLD_POOL, HOLD_POOL]
    # qa_sjf: a ending frees cpu-worker-0, for which nothing waits; b failing hands
    # cpu-worker-1 to d, the shortest of its waiting runs.
    with create_session() as session:
        assert scheduling.dispatch_after(_end(session, "a")) == {}
    with create_session() as session:
        handed = scheduling.dispatch_after(_end(session, "b", "failed"))
    assert {r: d.worker for (_, r), d in handed.items()} == {"d": "cpu-worker-1"}
    with create_session() as session:
        assert placed(session, "d")[:2] == ("cpu-worker-1", "cpu-worker-1")
        assert not kept(session, scheduling, "d").held
        assert placed(session, "c")[0] == HOLD_POOL
    # ws_sjf: a worker free at a trigger takes the first waiting run, wherever it waits:
    # e is placed on the free cpu-worker-0, but c, shorter and waiting on busy
    # cpu-worker-1, goes there first; when d ends, cpu-worker-1 takes e.
    monkeypatch.setenv("AIRFLOW__INFERBENCH__SCHED_POLICY", "ws_sjf")
    trigger("e", 2.0)
    with create_session() as session:
        c, e = kept(session, scheduling, "c"), kept(session, scheduling, "e")
        assert (c.worker, c.held, placed(session, "c")[:2]) == (
            "cpu-worker-0", False, ("cpu-worker-0", "cpu-worker-0"))
        assert (e.worker, e.held, placed(session, "e")[0]) == ("cpu-worker-0", True, HOLD_POOL)
    with create_session() as session:
        handed = scheduling.dispatch_after(_end(session, "d"))
    assert {r: d.worker for (_, r), d in handed.items()} == {"e": "cpu-worker-1"}
    with create_session() as session:
        assert placed(session, "e")[:2] == ("cpu-worker-1", "cpu-worker-1")


def test_a_hand_over_lost_is_made_up_at_the_next_trigger(policy_installed):
    """If no listener handed a freed worker on (it failed, or the run was ended by hand),
    the next decision does: the freed worker starts the policy's next run, here the one
    that waited (shorter than the new one), and the new one waits."""
    from airflow.utils.session import create_session

    scheduling = policy_installed
    trigger("a", 1.0)
    trigger("b", 1.0)
    trigger("c", 0.5)  # waits for a busy worker
    with create_session() as session:
        waiting_for = kept(session, scheduling, "c").worker
        _end(session, "a" if waiting_for == "cpu-worker-0" else "b")  # no dispatch_after
    trigger("d", 1.0)
    with create_session() as session:
        c, d = kept(session, scheduling, "c"), kept(session, scheduling, "d")
        assert (c.held, placed(session, "c")[0]) == (False, waiting_for)
        assert d.held and placed(session, "d")[0] == HOLD_POOL
