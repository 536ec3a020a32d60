"""A run's directory name: one per run id (no two runs share one), never the runs root."""

from __future__ import annotations

import pytest

from inferbench.errors import InferBenchError
from inferbench.paths import RunDir, safe_run_id


def test_run_ids_that_differ_only_in_unsafe_characters_get_different_directories(tmp_path):
    ids = ["a:b", "a+b", "a_b", "a=b", "a=3ab", "a b", "a/b", "a\\b", "aéb"]
    names = [safe_run_id(i) for i in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert "/" not in name and ":" not in name and name not in (".", "..")
    dirs = {RunDir(i, tmp_path).ensure().path for i in ids}
    assert len(dirs) == len(ids) and all(d.parent == tmp_path for d in dirs)


def test_an_airflow_run_id_keeps_a_readable_name():
    assert safe_run_id("manual__2026-12-03T10:00:00+00:00") == \
        "manual__2026-12-03T10=3a00=3a00=2b00=3a00"
    assert safe_run_id("demo-1.2_x") == "demo-1.2_x"


@pytest.mark.parametrize("run_id", ["", ".", ".."])
def test_a_run_id_that_would_name_the_runs_root_or_its_parent_is_refused(run_id, tmp_path):
    with pytest.raises(InferBenchError, match="cannot name a run directory"):
        RunDir(run_id, tmp_path)


def test_a_run_id_too_long_for_a_directory_is_refused():
    with pytest.raises(InferBenchError, match="too long for a directory name"):
        safe_run_id(":" * 100)
