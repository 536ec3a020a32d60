"""The cluster tier: docker-compose.yaml brought up for real on this host (PostgreSQL, Redis
with its password, the Airflow api-server, scheduler, dag-processor and triggerer with the
CeleryExecutor, and two CPU workers), two benchmarks triggered at once over the REST API,
then the cluster taken down. Checks that the cluster policy put the two runs on different
workers, that no worker ran two at once, that both ended VALID with their results in the
cluster's PostgreSQL, and that nothing of the cluster is left running."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
from conftest import ROOT

from inferbench.compose_cluster import ComposeCluster, build_images

pytestmark = pytest.mark.cluster

PROJECT = "ibclustertest"
DAG_ID = "inferbench_benchmark"
SPEC = json.loads((ROOT / "examples" / "quick-onnxruntime.json").read_text())


@pytest.fixture(scope="module")
def cluster(docker_client, tmp_path_factory):
    """The compose cluster with two CPU workers, up. Taken down (volumes too) afterwards,
    whatever the test did."""
    build_images()
    cluster = ComposeCluster.create(PROJECT, tmp_path_factory.mktemp("cluster-home"),
                                    INFERBENCH_SCHED_POLICY="qa_sjf")
    try:
        cluster.up()
        yield cluster
    finally:
        print(cluster.compose("logs", "--tail", "50").stdout)  # kept on a failure
        down = cluster.down()
        assert down.returncode == 0, down.stderr[-2000:]


def _interval(ti) -> tuple[datetime, datetime]:
    return (datetime.fromisoformat(ti["start_date"].replace("Z", "+00:00")),
            datetime.fromisoformat(ti["end_date"].replace("Z", "+00:00")))


def test_two_benchmarks_run_at_once_on_different_workers(cluster, docker_client):
    import sqlalchemy as sa

    from inferbench.spec import BenchmarkSpec

    client = cluster.wait_for_api(DAG_ID)
    runs = [client.trigger(DAG_ID, None, BenchmarkSpec.model_validate(
        {**SPEC, "name": f"cluster-{i}"}).model_dump(mode="json"))["dag_run_id"]
        for i in range(2)]
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        states = [client.get_run(DAG_ID, r)["state"] for r in runs]
        if all(s in ("success", "failed") for s in states):
            break
        time.sleep(5)
    assert states == ["success", "success"], states

    # Placement: every task of a run in one worker's pool and queue, the two runs apart.
    workers = {}
    ran = {}
    for run in runs:
        tis = [ti for ti in client.task_instances(DAG_ID, run) if ti["state"] == "success"]
        assert {ti["pool"] for ti in tis} == {ti["queue"] for ti in tis}
        (workers[run],) = {ti["queue"] for ti in tis}
        ran[run] = [_interval(ti) for ti in tis]
    assert set(workers.values()) == {"cpu-worker-0", "cpu-worker-1"}
    # No worker ran two benchmarks at once (runs sharing a worker never overlap), and the two
    # runs did run at the same time, each on its own worker.
    span = {r: (min(s for s, _ in ran[r]), max(e for _, e in ran[r])) for r in runs}
    for a in runs:
        for b in runs:
            if a < b and workers[a] == workers[b]:
                assert span[a][1] <= span[b][0] or span[b][1] <= span[a][0], (a, b)
    (a, b) = runs
    assert span[a][0] < span[b][1] and span[b][0] < span[a][1], span

    # The results in the cluster's PostgreSQL, through the results role.
    engine = sa.create_engine(cluster.results_url)
    try:
        with engine.connect() as conn:
            verdicts = dict(conn.execute(sa.text(
                "SELECT run_id, verdict FROM runs WHERE run_id = ANY(:r)"), {"r": runs}).all())
            placed = dict(conn.execute(sa.text(
                "SELECT run_id, worker FROM sched_jobs WHERE run_id = ANY(:r)"),
                {"r": runs}).all())
            answered = dict(conn.execute(sa.text(
                "SELECT run_id, count(*) FROM requests WHERE run_id = ANY(:r) "
                "GROUP BY run_id"), {"r": runs}).all())
    finally:
        engine.dispose()
    assert verdicts == {r: "VALID" for r in runs}
    assert placed == workers
    assert all(answered.get(r, 0) >= SPEC["min_requests"] for r in runs), answered

    # Down: nothing of the cluster left, its stage and serving containers included.
    down = cluster.down()
    assert down.returncode == 0, down.stderr[-2000:]
    left = docker_client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={PROJECT}"})
    assert left == []
    from inferbench.containers import LABEL_RUN

    assert [c.name for c in docker_client.containers.list(all=True)
            if c.labels.get(LABEL_RUN) in runs] == []
