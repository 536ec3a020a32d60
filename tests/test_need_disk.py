"""scripts/need-disk.sh: the set-up's check for free disk space before it writes gigabytes."""

from __future__ import annotations

import re
import shutil
import subprocess

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "need-disk.sh"


def _need(gb: int, directory) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(gb), str(directory), "installing things"],
                          capture_output=True, text=True, timeout=30)


def test_enough_free_space_passes_silently(tmp_path):
    done = _need(0, tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_too_little_names_what_needs_it_how_much_is_free_and_the_fix(tmp_path):
    free_gb = shutil.disk_usage(tmp_path).free // 2**30
    done = _need(free_gb + 10, tmp_path)
    assert done.returncode == 1
    assert f"installing things needs about {free_gb + 10} GB free" in done.stderr
    said = re.search(rf"\(holding {re.escape(str(tmp_path.resolve()))}\); (\d+) GB is free",
                     done.stderr)
    # other writers on a shared disk may move it across a gigabyte meanwhile
    assert said and abs(int(said.group(1)) - free_gb) <= 1, done.stderr
    assert "fix: free space there" in done.stderr
