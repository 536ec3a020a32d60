"""Predict how long a benchmark job takes, from its spec and (optionally) history.

The prior is the spec's own arithmetic: every measurement point costs its warm-up plus the
longer of `min_duration_s` and the time `min_requests` take at the target rate (capped by
`max_duration_s`). A family (platform x server configuration x batch size) is one point, or
a load ladder of several (rungs after the first warm up for `ladder.settle_s`): every listed
load, or a search's expected climb and bisection, within `ladder.max_rungs` and
`ladder.max_family_s`; a family that is predicted first (`ladder.predict`) adds its light
profile (one level per concurrency up to the server's instances + 1, then the two
open-loop probes). Each server configuration of each platform adds its start-up, the run
adds model generation, one conversion per format and a fixed Airflow overhead per task.
History then
scales the prior by how far it missed on similar finished runs (same spec hash first, else
same model family and platforms), so systematic errors (a slow host, a slow exporter)
correct themselves after a few runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from inferbench.backends import descriptor
from inferbench.load.profile_plan import LEVEL_SETTLE_S
from inferbench.spec import Arrival, BenchmarkSpec, LadderMode, ModelFormat

# Each platform's start-up estimate is its descriptor's startup_s (inferbench/platforms.py).
# Conversions: measured on the 2-core development VM (duration_s in the conversions table),
# rounded up. They only need to be right in ratio: SJF orders by them and history rescales
# them.
# savedmodel: measured here, ~0.5 s per small model after a ~9 s first TensorFlow import.
CONVERT_S: dict[ModelFormat, float] = {ModelFormat.ONNX: 6.0, ModelFormat.TORCHSCRIPT: 2.0,
                                       ModelFormat.SAVEDMODEL: 10.0}
CONVERT_PER_BLOCK_S = 0.5  # exporters trace every block: deeper models convert longer
GENERATE_S = 3.0
TASK_OVERHEAD_S = 1.5  # Airflow: scheduler loop + task process start, per task
# generate, convert, analyze + per platform configs, collect, stop, and one measure task per
# server configuration.
RUN_TASKS = 3
PLATFORM_TASKS = 3
# A search climbs from its start until a rung fails: how many rungs that takes depends on the
# server, which is not known up front; this many is the prior (history corrects it).
SEARCH_CLIMB_RUNGS = 4
# A profile's three open-loop probes together: they stop at a number of answers, a few
# seconds at the rates the profile sets (inferbench/load/profile.py); history corrects it.
PROFILE_PROBES_S = 4.5
# History: how many similar runs to look at, and how far one correction may go.
HISTORY_RUNS = 20
HISTORY_MIN_RUNS = 1
CORRECTION_BOUNDS = (0.25, 4.0)


@dataclass(frozen=True)
class Prediction:
    """A predicted job length and its parts (seconds)."""

    point_s: float  # one measurement point: warm-up + measured part
    points: int  # families per platform and server configuration (one per batch size)
    platforms: int
    startup_s: float  # all platforms' start-up, once per server configuration
    prepare_s: float  # generation + conversions
    overhead_s: float  # Airflow task overhead
    prior_s: float  # all of the above
    correction: float = 1.0  # history's actual/prior ratio (1.0: no history)
    history_runs: int = 0
    configs: int = 1  # server configurations (each starts every platform's server again)
    rungs: float = 1.0  # expected rungs of one family's load ladder
    family_s: float = 0.0  # one family: its ladder's rungs, within ladder.max_family_s

    @property
    def total_s(self) -> float:
        return self.prior_s * self.correction


def point_s(spec: BenchmarkSpec) -> float:
    """Warm-up + measured time of one point. Closed loop has no target rate, so only
    `min_duration_s` is known up front (history corrects the rest)."""
    measured = spec.min_duration_s
    if spec.workload.arrival is Arrival.POISSON and spec.workload.loads:
        measured = max(measured, spec.min_requests / spec.workload.loads[0])
    return spec.warmup_s + min(measured, spec.max_duration_s)


def rung_s(spec: BenchmarkSpec, load: float, first: bool) -> float:
    """One rung of a ladder at `load` (req/s open loop, clients closed loop): the family's
    warm-up (first rung) or the settle, then the measured part, as point_s counts it."""
    measured = spec.min_duration_s
    if spec.workload.open_loop and load > 0:
        measured = max(measured, spec.min_requests / load)
    warm = spec.warmup_s if first else spec.ladder.settle_s
    return warm + min(measured, spec.max_duration_s)


def ladder_loads(spec: BenchmarkSpec) -> list[float]:
    """The loads a family's ladder is expected to run: every listed load, or a search's
    climb from its start (SEARCH_CLIMB_RUNGS rungs) and its bisection between the last two
    (as many rungs as halving log(growth) down to log(1 + precision) takes); within
    ladder.max_rungs."""
    ladder, start = spec.ladder, spec.workload.loads
    if spec.ladder_mode is LadderMode.LIST:
        return start[:ladder.max_rungs]
    climb = [start[0] * ladder.growth ** k for k in range(SEARCH_CLIMB_RUNGS)]
    halvings = math.log2(math.log(ladder.growth) / math.log1p(ladder.precision_pct / 100))
    middle = start[0] * ladder.growth ** (SEARCH_CLIMB_RUNGS - 1.5)
    return (climb + [middle] * max(0, math.ceil(halvings)))[:ladder.max_rungs]


def profile_s(spec: BenchmarkSpec, instances: int, dynamic_batching: bool = False) -> float:
    """A family's light profile before its ladder (0 when the spec does not predict): one
    closed-loop level per concurrency 1..instances + 1, each settled and measured, then
    the open-loop probes (none for a server that batches: it is not modelled)."""
    if not spec.predicts:
        return 0.0
    probes_s = 0.0 if dynamic_batching else PROFILE_PROBES_S
    return (instances + 1) * (LEVEL_SETTLE_S + spec.ladder.profile_s) + probes_s


def family_s(spec: BenchmarkSpec, instances: int = 1, dynamic_batching: bool = False
             ) -> tuple[float, float]:
    """(expected rungs, seconds) of one family on a server with `instances` instances: one
    point, or its profile and its ladder's rungs, the rungs within ladder.max_family_s (the
    ladder starts no rung that would not fit)."""
    if spec.ladder_mode is LadderMode.SINGLE:
        return 1.0, point_s(spec)
    loads = ladder_loads(spec)
    times = [rung_s(spec, load, first=i == 0) for i, load in enumerate(loads)]
    total = 0.0
    for i, t in enumerate(times):
        if i and total + max(times[:i]) > spec.ladder.max_family_s:
            return float(i), total + profile_s(spec, instances, dynamic_batching)
        total += t
    return float(len(times)), total + profile_s(spec, instances, dynamic_batching)


def prior(spec: BenchmarkSpec) -> Prediction:
    """The prediction from the spec alone."""
    one = point_s(spec)
    grid = spec.server.grid()
    configs = len(grid)
    families = [family_s(spec, instances, batching) for batching, *_, instances in grid]
    rungs = families[0][0]
    measuring = sum(seconds for _, seconds in families) * len(spec.batch_sizes) * \
        len(spec.platforms)
    startup = configs * sum(descriptor(p).startup_s for p in spec.platforms)
    prepare = GENERATE_S + sum(CONVERT_S[f] + CONVERT_PER_BLOCK_S * spec.model.depth
                               for f in spec.formats)
    overhead = TASK_OVERHEAD_S * (RUN_TASKS + (PLATFORM_TASKS + configs) * len(spec.platforms))
    return Prediction(point_s=one, points=len(spec.batch_sizes), platforms=len(spec.platforms),
                      startup_s=startup, prepare_s=prepare, overhead_s=overhead,
                      prior_s=measuring + startup + prepare + overhead, configs=configs,
                      rungs=rungs, family_s=families[0][1])


def correction(pairs: Iterable[tuple[float, float]]) -> tuple[float, int]:
    """Median of actual/prior over (prior_s, actual_s) pairs, clamped to CORRECTION_BOUNDS.
    The median: one run that hung until its timeout must not skew every later prediction."""
    ratios = [actual / prior_s for prior_s, actual in pairs if prior_s > 0 and actual > 0]
    if len(ratios) < HISTORY_MIN_RUNS:
        return 1.0, 0
    low, high = CORRECTION_BOUNDS
    return min(high, max(low, statistics.median(ratios))), len(ratios)


def predict(spec: BenchmarkSpec, history: Iterable[tuple[float, float]] = ()) -> Prediction:
    """Prior from the spec, scaled by the history of similar runs ((prior_s, actual_s) pairs;
    see inferbench.scheduling.history.similar_runs)."""
    base = prior(spec)
    factor, n = correction(history)
    return Prediction(**{**base.__dict__, "correction": factor, "history_runs": n})
