"""Files named in a spec or a DAG parameter (traces, sweeps): read only from the data
directories, only as bounded regular UTF-8 files, and never echoed into an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inferbench import user_files
from inferbench.errors import InferBenchError
from inferbench.load.arrivals import load_trace, schedule_for
from inferbench.scheduling.sweep import load_sweep
from inferbench.spec import Arrival, WorkloadSpec

SECRET = "POSTGRES_PASSWORD=hunter2"


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    monkeypatch.setenv(user_files.DATA_DIRS_ENV, str(d))
    return d


def test_a_trace_in_the_data_directory_is_read_by_relative_or_absolute_path(data_dir):
    (data_dir / "t.csv").write_text("0.0\n0.5\n1.0\n")
    dirs = user_files.data_dirs()
    assert load_trace("t.csv", dirs).offsets_ns.tolist() == [0, 500_000_000, 1_000_000_000]
    assert load_trace(data_dir / "t.csv", dirs).offsets_ns.size == 3


def test_the_default_data_directory_is_under_the_home(tmp_path, monkeypatch):
    monkeypatch.delenv(user_files.DATA_DIRS_ENV, raising=False)
    monkeypatch.setenv("INFERBENCH_HOME", str(tmp_path))
    assert user_files.data_dirs() == [(tmp_path / "data").resolve()]


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_file_outside_the_data_directories_is_refused_without_reading_it(
        data_dir, tmp_path, how):
    secret = tmp_path / "secrets.env"
    secret.write_text(SECRET + "\n")
    path = {"absolute": str(secret), "dotdot": "../secrets.env", "symlink": "link.csv"}[how]
    if how == "symlink":
        (data_dir / "link.csv").symlink_to(secret)
    with pytest.raises(InferBenchError, match="outside the data directories") as info:
        load_trace(path, user_files.data_dirs())
    assert "hunter2" not in str(info.value) and user_files.DATA_DIRS_ENV in str(info.value)


def test_a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(data_dir):
    os.mkfifo(data_dir / "pipe.csv")
    with pytest.raises(InferBenchError, match="not a regular file"):
        load_trace("pipe.csv", user_files.data_dirs())


def test_a_device_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(user_files.DATA_DIRS_ENV, "/dev")
    with pytest.raises(InferBenchError, match="not a regular file"):
        load_trace("/dev/zero", user_files.data_dirs())
    # The stand-alone command's own user may name any file, still not a device.
    with pytest.raises(InferBenchError, match="not a regular file"):
        load_trace("/dev/zero")


def test_an_oversized_trace_is_refused_by_its_size(data_dir):
    big = data_dir / "big.csv"
    with big.open("wb") as f:  # sparse: nothing is written, the size is what counts
        f.truncate(64 * 1024 * 1024 + 1)
    with pytest.raises(InferBenchError, match="over the limit"):
        load_trace(big, user_files.data_dirs())


@pytest.mark.parametrize("content,message", [
    (b"0.0\n\x00\x01\x02\n", "binary"),
    (b"0.0\n\xff\xfe1.0\n", "not UTF-8"),
    (b"0.0\nnan\n", "line 2: the timestamp is not a finite number"),
    (b"0.0\ninf\n", "line 2: the timestamp is not a finite number"),
    (b"0.0\n1e12\n", "spans 1e\\+12 s"),
    (b"time\n0.0\n" + SECRET.encode() + b"\n", "line 3 is not"),
])
def test_bad_trace_content_gets_a_clean_error_that_quotes_nothing(data_dir, content,
                                                                    message):
    (data_dir / "t.csv").write_bytes(content)
    with pytest.raises(InferBenchError, match=message) as info:
        load_trace("t.csv", user_files.data_dirs())
    assert "hunter2" not in str(info.value) and "trace_path" in str(info.value)


def test_the_load_stage_schedule_reads_traces_only_from_the_data_directories(data_dir,
                                                                            tmp_path):
    outside = tmp_path / "t.csv"
    outside.write_text("0.0\n1.0\n")
    workload = WorkloadSpec(arrival=Arrival.TRACE, trace_path=str(outside))
    # The stand-alone command (no directories) reads it ...
    assert list(schedule_for(workload, 0).offsets_ns) == [0, 1_000_000_000]
    # ... a run's load stage (the data directories) does not.
    with pytest.raises(InferBenchError, match="outside the data directories"):
        schedule_for(workload, 0, user_files.data_dirs())


def test_a_sweep_file_outside_its_directories_or_not_json_is_refused_quoting_nothing(
        data_dir, tmp_path):
    outside = tmp_path / "sweep.json"
    outside.write_text("{}")
    with pytest.raises(InferBenchError, match="sweep_file .* outside the data directories"):
        load_sweep(outside, user_files.data_dirs())
    (data_dir / "bad.json").write_text("{\n" + SECRET + "\n")
    with pytest.raises(InferBenchError, match="not valid JSON .* line 2 column 1") as info:
        load_sweep(data_dir / "bad.json", user_files.data_dirs())
    assert "hunter2" not in str(info.value)
