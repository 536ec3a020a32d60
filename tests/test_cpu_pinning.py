"""Keeping the server and the load generator on CPUs of their own: the CPU lists, the
spec's check, and a whole run whose real server runs on the listed CPU while the load
generator runs on the others."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from inferbench import cpu_pinning
from inferbench.cpu_pinning import format_cpu_list, parse_cpu_list, pinned, split, taskset_argv
from inferbench.errors import InferBenchError
from inferbench.spec import parse_spec

QUICK = json.loads((Path(__file__).parents[1] / "examples" / "quick-onnxruntime.json")
                   .read_text())


@pytest.mark.parametrize("text, cpus, shortest", [
    ("1", {1}, "1"), ("2-5", {2, 3, 4, 5}, "2-5"), ("0,2-3", {0, 2, 3}, "0,2-3"),
    ("3,1,2", {1, 2, 3}, "1-3"), ("0, 4", {0, 4}, "0,4"), ("5-5", {5}, "5")])
def test_a_cpu_list_reads_as_linux_writes_it_and_prints_shortest(text, cpus, shortest):
    assert parse_cpu_list(text) == cpus
    assert format_cpu_list(cpus) == shortest
    assert parse_cpu_list(format_cpu_list(cpus)) == cpus


@pytest.mark.parametrize("text, says", [
    ("", "is not a CPU list"), ("a", "is not a CPU list"), ("1-", "is not a CPU list"),
    ("3-1", "'3-1' in '3-1' is not a range of CPUs; fix: write it low-high"),
    ("0-99999", "each 0..4095")])
def test_a_bad_cpu_list_is_named_with_the_fix(text, says):
    with pytest.raises(ValueError, match="fix:") as caught:
        parse_cpu_list(text)
    assert says in str(caught.value)


def test_the_spec_names_the_field_and_the_value_of_a_bad_cpu_list():
    with pytest.raises(InferBenchError) as caught:
        parse_spec({**QUICK, "resources": {"server_cpus": "1-"}})
    assert "resources.server_cpus" in str(caught.value)
    assert "'1-' is not a CPU list; fix:" in str(caught.value)
    assert parse_spec({**QUICK, "resources": {"server_cpus": "0,2-3"}}
                      ).resources.server_cpus == "0,2-3"


def test_the_split_keeps_the_load_generator_off_the_server_cpus(monkeypatch):
    monkeypatch.setattr(cpu_pinning, "usable_cpus", lambda: frozenset({0, 1, 2, 3}))
    assert split("1-2") == ({1, 2}, {0, 3})
    with pytest.raises(InferBenchError, match=r"names CPU 7-8, which this worker cannot use "
                       r"\(it may use 0-3\); fix: list CPUs from 0-3"):
        split("2,7-8")
    with pytest.raises(InferBenchError, match=r"takes every CPU this worker may use \(0-3\), "
                       r"so the load generator would have none; fix: leave at least one "
                       r"out, e.g. '1-3'"):
        split("0-3")


def test_taskset_starts_the_command_on_the_cpus_and_pinned_restores_the_thread():
    assert taskset_argv([2, 3, 5], ["srv", "--x"]) == ["taskset", "--cpu-list", "2-3,5",
                                                       "srv", "--x"]
    before = os.sched_getaffinity(0)
    one = min(before)
    with pinned({one}):
        assert os.sched_getaffinity(0) == {one}
    assert os.sched_getaffinity(0) == before
    with pinned(None):
        assert os.sched_getaffinity(0) == before


# --- a whole run on pinned CPUs: real PostgreSQL, a real server ---

@pytest.mark.integration
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to split")
def test_a_pinned_run_serves_on_the_listed_cpu_and_loads_from_the_others(inferbench_env,
                                                                         capsys):
    from inferbench.stages import STAGES
    from inferbench.stages.common import make_context, read_endpoint

    usable = sorted(os.sched_getaffinity(0))
    server_cpu, others = usable[-1], set(usable[:-1])
    run_id = "pinned-onnxruntime"
    spec = {**QUICK, "name": run_id, "resources": {"server_cpus": str(server_cpu)}}
    ctx = make_context(run_id, spec_json=json.dumps(spec))
    for stage in ("generate", "convert"):
        STAGES[stage](ctx)
    try:
        endpoint = STAGES["serve"](ctx, "onnxruntime")
        assert endpoint["server_cpus"] == str(server_cpu)
        server = psutil.Process(endpoint["pid"])
        # Every process of the server and every thread it runs, on the listed CPU only.
        for proc in [server, *server.children(recursive=True)]:
            assert proc.cpu_affinity() == [server_cpu], proc.cmdline()
            for thread in proc.threads():
                assert os.sched_getaffinity(thread.id) == {server_cpu}
        before = os.sched_getaffinity(0)
        STAGES["load"](ctx, "onnxruntime")
        assert os.sched_getaffinity(0) == before  # the stage's process is as it was
    finally:
        STAGES["collect"](ctx, "onnxruntime")
        STAGES["stop"](ctx, "onnxruntime")
    summary = STAGES["analyze"](ctx)
    files = ctx.run_dir.config_files("onnxruntime", 0)
    load = json.loads(files.load.read_text())
    assert parse_cpu_list(load["load_cpus"]) == others
    assert read_endpoint(files.endpoint)["server_cpus"] == str(server_cpu)
    assert summary["verdict"] == "VALID", summary["reasons"]
    said = f"server kept on CPUs {server_cpu} (resources.server_cpus)"
    assert said in capsys.readouterr().out  # the run's summary
    assert said in Path(summary["report"]).read_text()
