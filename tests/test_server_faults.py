"""Faults injected for real into a measured configuration: the server SIGKILLed in the
middle of a point, the configuration retried after that, the disk full while it measures.

Real ONNX Runtime server (FastAPI), real PostgreSQL; each test is a few seconds of load.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from test_pipeline import SPEC, converted, count

from inferbench import perfdb
from inferbench.backends.process import group_alive, tagged_leaders
from inferbench.errors import InferBenchError
from inferbench.perfdb import schema
from inferbench.stages import STAGES
from inferbench.stages.common import load_point_records, read_json

pytestmark = pytest.mark.integration

PLATFORM = "onnxruntime"


def _when(ready, action, after_s: float = 0.0) -> threading.Thread:
    """Run `action(found)` `after_s` seconds after `ready()` first returns something."""
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = ready()
            if found:
                time.sleep(after_s)
                action(found)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_server_sigkilled_mid_point_is_named_and_a_retry_keeps_both_attempts(
        inferbench_env, db_url):
    """SIGKILL the server a second into a 4 s point: the point's failed requests are recorded
    beside the ones it answered, the load stage ends naming how the server died, the
    deployment is partial with that reason, and nothing is left running. A retry of the
    same configuration then runs one server and sets the killed attempt's files aside."""
    run_id = "server-sigkilled"
    spec = {**SPEC, "name": run_id, "batch_sizes": [1, 4], "warmup_s": 0.5,
            "min_duration_s": 4, "max_duration_s": 8, "min_requests": 40}
    ctx = converted(run_id, spec)
    files = ctx.run_dir.config_files(PLATFORM, 0)
    def into_the_measured_phase():
        """The endpoint once the server has answered 60 requests: the warm-up's 20 (0.5 s
        at 40 req/s) and a second of the point's own."""
        endpoint = read_json(files.endpoint) if files.endpoint.exists() else None
        if not endpoint or endpoint.get("status") != "ready":
            return None
        url = f"{endpoint['url']}/v2/models/{endpoint['model_name']}/stats"
        with urllib.request.urlopen(url, timeout=5) as response:
            answered = json.loads(response.read())["model_stats"][0]["request_count"]
        return endpoint if answered >= 60 else None

    killed = _when(into_the_measured_phase,
                   lambda endpoint: os.kill(endpoint["pid"], signal.SIGKILL))
    with pytest.raises(InferBenchError) as ended:
        STAGES["measure"](ctx, PLATFORM, 0)
    killed.join()
    message = str(ended.value)
    assert "was killed by signal 9 (SIGKILL) during point 0" in message, message
    first_endpoint = read_json(files.endpoint)
    assert tagged_leaders(first_endpoint["server_tag"]) == []
    assert not group_alive(first_endpoint["pid"])
    load = read_json(files.load)
    assert "SIGKILL" in load["error"] and len(load["points"]) == 1  # the b4 family never ran
    status = load_point_records(files.point_records(0))["status"]
    assert (status == 200).sum() > 0 and (status == 0).sum() > 0, np.unique(status)

    collected = STAGES["collect"](ctx, PLATFORM)
    assert collected["status"] == "partial"
    with perfdb.engine(db_url).connect() as conn:
        error = conn.execute(select(schema.deployments.c.error).where(
            schema.deployments.c.run_id == run_id)).scalar_one()
        failed = conn.execute(select(schema.requests.c.status).where(
            schema.requests.c.run_id == run_id, schema.requests.c.status == 0)).all()
    assert "killed by signal 9 (SIGKILL)" in error and len(failed) == (status == 0).sum()

    retried = STAGES["measure"](ctx, PLATFORM, 0)  # the task cleared or retried
    assert [p["batch_size"] for p in retried["points"]] == [1, 4]
    attempt = files.attempts_dir / "1"
    assert read_json(attempt / "load.json")["error"] == load["error"]
    assert (attempt / "points" / "0.npz").exists() and (attempt / "server.log").exists()
    assert read_json(files.load).get("error") is None
    assert STAGES["collect"](ctx, PLATFORM)["status"] == "measured"
    with perfdb.engine(db_url).connect() as conn:
        assert count(conn, schema.points, run_id) == 2


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB tmpfs (root only): writes past it fail with ENOSPC."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the disk to its last byte; the ballast file to delete to free it again."""
    ballast = disk / "ballast"
    try:
        with ballast.open("wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    return ballast


def test_a_disk_filled_mid_run_keeps_the_points_already_written(inferbench_env, db_url,
                                                                  small_disk, monkeypatch):
    """The run directory's disk fills while the second point runs: its records cannot be
    written, the stage fails saying so, the first point's files stay whole (no torn file,
    no temporary left), the server is stopped, and once space is freed collect stores the
    first point with the deployment partial."""
    run_id = "disk-full"
    spec = {**SPEC, "name": run_id, "batch_sizes": [1, 4], "warmup_s": 0,
            "min_duration_s": 1.5, "max_duration_s": 4, "min_requests": 20,
            "workload": {"arrival": "closed_loop", "concurrency": 1, "seed": 3}}
    ctx = converted(run_id, spec)  # the model and its formats on the big disk
    # Only this configuration's directory lives on the small disk.
    files = ctx.run_dir.config_files(PLATFORM, 0)
    files.dir.rmdir()
    files.dir.symlink_to(small_disk)
    ballast: list[Path] = []
    def first_point_written():
        load = read_json(files.load) if files.load.exists() else None
        return load and load["points"]

    # point 1 takes at least 1.5 s: the disk is full long before it ends
    _when(first_point_written, lambda points: ballast.append(_fill(small_disk)))
    with pytest.raises(InferBenchError) as full:
        STAGES["measure"](ctx, PLATFORM, 0)
    assert f"the disk holding {files.points_dir} is full (ENOSPC)" in str(full.value), full.value
    endpoint = read_json(files.endpoint)
    assert not group_alive(endpoint["pid"]) and tagged_leaders(endpoint["server_tag"]) == []
    assert not list(files.dir.rglob("*.tmp")), "a torn temporary file was left"
    load = read_json(files.load)
    assert [p["point"] for p in load["points"]] == [0]
    assert len(load_point_records(files.point_records(0))["status"]) >= 20
    ballast[0].unlink()
    collected = STAGES["collect"](ctx, PLATFORM)
    assert collected["status"] == "partial" and collected["points"] == 1


def test_a_sigkilled_task_process_takes_its_local_stage_and_server_with_it(inferbench_env):
    """The Airflow task process running a local-runtime measure is SIGKILLed (a lost
    worker): its stage process gets SIGTERM from the kernel (parent-death signal), stops
    the server it started and records why; no stage process or server is left."""
    import psutil

    run_id = "task-sigkilled"
    spec = {**SPEC, "batch_sizes": [1], "name": run_id, "warmup_s": 0,
            "min_duration_s": 120, "max_duration_s": 180,
            "workload": {"arrival": "closed_loop", "concurrency": 1, "seed": 3}}
    ctx = converted(run_id, spec)
    files = ctx.run_dir.config_files(PLATFORM, 0)
    task = subprocess.Popen(
        [sys.executable, "-c",
         "import json, logging, sys\n"
         "from inferbench.pipeline import Stage\n"
         "from operators.runners import LocalRunner, StageCall\n"
         f"call = StageCall(Stage.MEASURE, {run_id!r}, json.loads(sys.argv[1]), "
         f"{PLATFORM!r}, 0)\n"
         "LocalRunner().run(call, logging.getLogger('task'))\n", json.dumps(spec)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stage_processes() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "stage measure" in cmd and f"--run {run_id}" in cmd:
                found.append(proc)
        return found

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            endpoint = read_json(files.endpoint) if files.endpoint.exists() else None
            if endpoint and endpoint.get("status") == "ready":
                break
            time.sleep(0.2)
        assert endpoint and endpoint.get("status") == "ready"
        assert len(stage_processes()) == 1
        time.sleep(2)  # into the point
        os.kill(task.pid, signal.SIGKILL)
        task.wait(timeout=10)
        deadline = time.monotonic() + 60
        while stage_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stage_processes() == [], "the stage outlived its SIGKILLed task"
        assert tagged_leaders(endpoint["server_tag"]) == []
        assert "terminated (SIGTERM)" in read_json(files.load)["error"]
    finally:
        for proc in stage_processes():
            proc.kill()
        for pid in tagged_leaders(read_json(files.endpoint)["server_tag"]):
            os.killpg(pid, signal.SIGKILL)
