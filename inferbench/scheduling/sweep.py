"""The nightly sweep: a grid (models x platforms x batch sizes x rates) expanded into
benchmark runs.

A sweep file is JSON:

    {"name": "nightly",
     "base": {... any BenchmarkSpec fields shared by every run ...},
     "grid": {"models": [{...ModelSpec...}, ...],
              "platforms": ["triton", "onnxruntime"],
              "batch_sizes": [1, 8],
              "rates_rps": [20, 40]}}

One run per (model, platform, rate); the batch sizes are the points inside each run (a
run already measures several batch sizes on one server start, so splitting them would
only repeat generation, conversion and start-up). Every run carries the sweep's label
(`sweep_id`), is validated as a BenchmarkSpec before anything is triggered, and the runs
come out shortest predicted first: triggered in that order they start shortest first even
where the benchmark DAG admits one run at a time, and the cluster policy places and
prioritises each as it is created.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferbench import user_files
from inferbench.errors import InferBenchError
from inferbench.scheduling.policies import Policy, WorkerLoad, place
from inferbench.scheduling.predictor import predict
from inferbench.spec import parse_spec

GRID_KEYS = ("models", "platforms", "batch_sizes", "rates_rps")
TOP_KEYS = ("name", "base", "grid")


@dataclass(frozen=True)
class SweepRun:
    run_id: str
    conf: dict[str, Any]  # the BenchmarkSpec as JSON
    predicted_s: float


# A sweep is a grid of a few dozen runs; a megabyte is far beyond any real one.
MAX_SWEEP_BYTES = 1 << 20


def load_sweep(path: str | Path, dirs: Sequence[Path] | None = None) -> dict[str, Any]:
    """A sweep file's JSON; `dirs`: the directories it must lie in (None: anywhere)."""
    text = user_files.read_text(path, field="sweep_file", max_bytes=MAX_SWEEP_BYTES, dirs=dirs)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # Position only: the message of a decode error quotes nothing of the file.
        raise InferBenchError(f"sweep_file {str(path)!r}: not valid JSON ({exc.msg} at line "
                              f"{exc.lineno} column {exc.colno}); fix the file") from None


def _check(data: Any, source: str) -> None:
    if not isinstance(data, dict):
        raise InferBenchError(f"{source}: expected a JSON object, got {type(data).__name__}")
    for key in data:
        if key not in TOP_KEYS:
            raise InferBenchError(f"{source}: unknown key {key!r}; allowed keys: "
                                  f"{', '.join(TOP_KEYS)}; fix: remove or rename it")
    grid = data.get("grid")
    if not isinstance(grid, dict):
        raise InferBenchError(f"{source}: `grid` is required (an object with "
                              f"{', '.join(GRID_KEYS)})")
    for key in grid:
        if key not in GRID_KEYS:
            raise InferBenchError(f"{source}: unknown key {key!r} in grid; allowed keys: "
                                  f"{', '.join(GRID_KEYS)}; fix: remove or rename it")
    for key in GRID_KEYS:
        value = grid.get(key)
        if not isinstance(value, list) or not value:
            raise InferBenchError(f"{source}: grid.{key} {value!r} must be a non-empty list")


def expand_sweep(data: Any, sweep_id: str, source: str = "sweep") -> list[SweepRun]:
    """All runs of the sweep, shortest predicted first. Raises InferBenchError naming every
    bad field before anything runs."""
    _check(data, source)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", sweep_id):
        raise InferBenchError(f"sweep id {sweep_id!r} must be 1-80 letters, digits, _ . -")
    base, grid = data.get("base", {}), data["grid"]
    runs = []
    combos = itertools.product(enumerate(grid["models"]), grid["platforms"], grid["rates_rps"])
    for (m, model), platform, rate in combos:
        workload = {**base.get("workload", {}), "arrival": "poisson", "rate_rps": rate}
        workload.pop("concurrency", None)
        raw = {**base, "name": f"{data.get('name', 'sweep')}-m{m}-{platform}-r{rate:g}",
               "model": model, "platforms": [platform], "batch_sizes": grid["batch_sizes"],
               "workload": workload, "sweep_id": sweep_id}
        spec = parse_spec(raw, source=f"{source}: run (model {m}, {platform}, {rate:g} rps)")
        conf = spec.model_dump(mode="json")
        runs.append(SweepRun(run_id=f"sweep_{sweep_id}_{len(runs):03d}", conf=conf,
                             predicted_s=predict(spec).total_s))
    runs.sort(key=lambda r: (r.predicted_s, r.run_id))
    return runs


def planned_placement(runs: list[SweepRun], workers: list[str],
                      policy: Policy = Policy.QA_SJF) -> dict[str, str]:
    """Where the policy would put the runs if they were submitted together to idle workers
    (what the cluster policy will do at trigger time, absent other work): for the DAG's log
    and the tests. The real placement is made per run, when Airflow creates it."""
    loads = {w: WorkerLoad() for w in workers}
    out, last = {}, None
    for run in runs:
        w = place(policy, workers, loads, last)
        out[run.run_id] = last = w
        loads[w] = WorkerLoad(loads[w].active_jobs + 1, loads[w].queued_work_s + run.predicted_s)
    return out
