"""The README's main path through the real Airflow scheduler: embedded PostgreSQL, scheduler,
dag-processor and api-server started for real, the run triggered over the REST API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import ROOT
from sqlalchemy import func, select

from inferbench.netutil import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def inferbench(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inferbench", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def leftovers(home: str, port: str, pids: list[int]) -> list[str]:
    """Processes of this home still running: recorded Airflow pids and their groups, the
    api-server on our port (Airflow rewrites process titles, so match what they show), and
    PostgreSQL on our data directory."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue  # already dead; waits for a parent (or a PID 1 that never reaps) to reap it
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            group = os.getpgid(proc.info["pid"])
        except (psutil.Error, ProcessLookupError):
            continue
        if home in cmd or f"port:{port}" in cmd or group in pids:
            found.append(cmd)
    return found


def test_two_runs_through_the_scheduler_stay_apart(tmp_path):
    home = str(tmp_path / "home")
    port = str(free_port())
    env = {**os.environ, "INFERBENCH_HOME": home}
    for key in ("INFERBENCH_DB_URL", "INFERBENCH_SPEC_JSON", "AIRFLOW_HOME") + tuple(
            k for k in os.environ if k.startswith("AIRFLOW__")):
        env.pop(key, None)
    spec = str(ROOT / "examples" / "quick-onnxruntime.json")
    try:
        first = inferbench("run", spec, "--json", "--port", port, env=env)
        assert first.returncode == 0, first.stdout + first.stderr[-5000:]
        one = json.loads(first.stdout)
        assert one["verdict"] == "VALID" and one["status"] == "complete"
        assert one["throughput_rps"] > 0
        assert 0 < one["latency_ms"]["p50"] <= one["latency_ms"]["p99"]
        assert os.path.exists(one["report"])
        # The analyze task's log in Airflow names the report (what a UI user clicks through to).
        analyze_log = Path(home, "airflow", "logs", "dag_id=inferbench_benchmark",
                           f"run_id={one['run_id']}", "task_id=analyze", "attempt=1.log")
        assert f"report: {one['report']}" in analyze_log.read_text()
        # The measure task's log carries each point's numbers, the analyze task's the answer.
        run_logs = analyze_log.parent.parent
        measure_logs = list(run_logs.glob("task_id=*.measure/**/attempt=1.log"))
        assert measure_logs, sorted(p.name for p in run_logs.iterdir())
        measured = "".join(log.read_text() for log in measure_logs)
        assert " offered, " in measured and "achieved, p50 " in measured and "VALID" in measured
        assert "Best within" in analyze_log.read_text() or "no configuration meets" in \
            analyze_log.read_text()

        # A conf whose fields each pass Airflow's per-field check but not together is
        # refused at trigger, with the reason, and no run is created.
        from inferbench.airflow_api import AirflowClient
        from inferbench.errors import InferBenchError
        from inferbench.pipeline import BENCHMARK_DAG_ID

        client = AirflowClient(f"http://127.0.0.1:{port}")
        # What the UI's health badges read: every component the embedded default runs.
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health") as r:
            health = json.load(r)
        assert {k: v["status"] for k, v in health.items()} == {
            k: "healthy" for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        }, health
        mismatched = {**json.loads(Path(spec).read_text()), "platforms": ["triton"],
                      "formats": ["torchscript"]}
        with pytest.raises(InferBenchError) as refused:
            client.trigger(BENCHMARK_DAG_ID, "refused-at-trigger", mismatched)
        assert "HTTP 400" in str(refused.value), refused.value
        assert "fix: add 'onnx' to formats" in str(refused.value), refused.value
        with pytest.raises(InferBenchError, match="HTTP 404"):
            client.get_run(BENCHMARK_DAG_ID, "refused-at-trigger")

        second = inferbench("run", spec, "--json", "--port", port, env=env)
        assert second.returncode == 0, second.stdout + second.stderr[-5000:]
        two = json.loads(second.stdout)
        assert two["run_id"] != one["run_id"] and two["report"] != one["report"]
        # Named by the API server after the spec, as a run from the UI's form is.
        assert all(r["run_id"].startswith("quick-fc__") for r in (one, two))


        from inferbench import perfdb
        from inferbench.embedded.postgres import database_url
        from inferbench.perfdb import schema

        url = database_url(Path(home), "inferbench")
        with perfdb.engine(url).connect() as conn:
            for run in (one, two):
                n = conn.execute(select(func.count()).select_from(schema.requests).where(
                    schema.requests.c.run_id == run["run_id"])).scalar_one()
                assert n == sum(r["n_ok"] + r["n_failed"] for r in run["results"]) >= 100
                facts = conn.execute(select(schema.provenance.c.facts).where(
                    schema.provenance.c.run_id == run["run_id"])).scalar_one()
                assert facts["spec_hash"] and facts["packages"]["apache-airflow"] == "3.3.2"
    finally:
        pids_file = os.path.join(home, "airflow", "pids.json")
        pids = list(json.load(open(pids_file)).values()) if os.path.exists(pids_file) else []
        down = inferbench("down", env=env, timeout=120)
        assert down.returncode == 0, down.stderr
    assert len(pids) == 4  # scheduler, dag-processor, triggerer, api-server
    assert leftovers(home, port, pids) == []
