"""What every stage gets: the run id, the validated spec, the run directory and the DB.

A stage is a plain function of a `StageContext`; it needs neither Airflow nor Docker, so
the same code runs as a local process, in a container, or straight from a test.
"""

from __future__ import annotations

import errno
import io
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NotRequired, Required, TypedDict, cast

import numpy as np
from sqlalchemy import Engine

from inferbench import perfdb
from inferbench.errors import InferBenchError
from inferbench.models import signature
from inferbench.models.signature import TensorSpec
from inferbench.paths import RunDir
from inferbench.pipeline import DB_ENV, SPEC_ENV
from inferbench.spec import BenchmarkSpec, parse_spec

SIGNATURE_FILE = "signature.json"  # in the run's model directory


@dataclass
class StageContext:
    run_id: str
    spec: BenchmarkSpec
    run_dir: RunDir
    db_url: str

    @property
    def db(self) -> Engine:
        return perfdb.engine(self.db_url)


@dataclass(frozen=True)
class RunSignature:
    """What a run's model takes and gives: the generate stage writes it to
    model/signature.json (read from a model file, or derived from a generated model's spec)."""

    inputs: tuple[TensorSpec, ...]
    num_outputs: int

    def to_json(self) -> dict:
        return {"inputs": signature.to_json(self.inputs), "num_outputs": self.num_outputs}


def run_signature(ctx: StageContext) -> RunSignature:
    """The run's model signature; a run generated before the file existed derives it from
    its spec (only generated models were possible then)."""
    data = read_json(ctx.run_dir.model_dir / SIGNATURE_FILE)
    if data is None:
        model = ctx.spec.model
        return RunSignature(model.generated_inputs, model.num_outputs)
    return RunSignature(signature.from_json(data["inputs"]), int(data["num_outputs"]))


def db_url_from_env() -> str:
    url = os.environ.get(DB_ENV)
    if not url:
        raise InferBenchError(
            f"{DB_ENV} is not set; it must name the results database, e.g. "
            "postgresql+psycopg://user:pw@host/inferbench (`inferbench up` sets it for the "
            "embedded default)")
    return url


def make_context(run_id: str, spec_json: str | None = None, db_url: str | None = None,
                 runs_root: Path | None = None) -> StageContext:
    """The spec comes from the caller (first stage) or from the run directory (later ones),
    so a retried or late stage always sees the spec the run started with."""
    run_dir = RunDir(run_id, runs_root)
    if run_dir.spec_file.exists():
        spec = parse_spec(json.loads(run_dir.spec_file.read_text()), str(run_dir.spec_file))
    else:
        raw = spec_json if spec_json is not None else os.environ.get(SPEC_ENV)
        if raw is None:
            raise InferBenchError(f"no spec for run {run_id!r}: {run_dir.spec_file} does not "
                                  f"exist and {SPEC_ENV} is not set; run the generate stage first")
        spec = parse_spec(json.loads(raw), source=f"spec of run {run_id!r}")
    return StageContext(run_id, spec, run_dir, db_url or db_url_from_env())


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through a temporary beside it, then rename: a reader never sees half a
    file, whether this task is killed or the disk fills mid-write (the temporary is removed
    and the previous file, if any, stays as it was)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
        tmp.replace(path)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise InferBenchError(
                f"the disk holding {path.parent} is full (ENOSPC) while writing {path.name}; "
                "what was written before is kept; fix: free space there, then clear the "
                "task") from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically (see _write_atomically)."""
    text = json.dumps(data, indent=2, default=str).encode()
    _write_atomically(path, lambda f: f.write(text))


def save_point_records(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write one point's request records atomically, like write_json: a task killed or a
    disk filled mid-write leaves the previous file or none, never a truncated one. The
    archive is built in memory first: numpy's zip writer, interrupted by a full disk, would
    leave a half-closed archive behind that fails again when it is collected."""
    archive = io.BytesIO()
    np.savez(archive, **arrays)
    _write_atomically(path, lambda f: f.write(archive.getbuffer()))


def load_point_records(path: Path) -> dict[str, np.ndarray]:
    """One point's request records; InferBenchError naming the file when it is missing or
    unreadable (truncated, corrupt)."""
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InferBenchError(f"request records {path} are unreadable ({type(exc).__name__}: "
                              f"{exc})") from None


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


class Endpoint(TypedDict, total=False):
    """`endpoint.json` of one server configuration, and the serve stage's result.

    Written as soon as the server process exists (status "starting"), so the teardown can
    stop it whatever happens later; then "ready" (with the cold start) or "failed" (with
    the error). The load stage needs only the required keys.
    """

    platform: Required[str]
    url: Required[str]              # http://HOST:PORT of the HTTP API
    model_name: Required[str]
    status: Required[str]           # starting | ready | failed
    protocol: str                   # the load generator's client (load.protocols)
    log: str                        # the server's log file
    config: int
    config_label: str
    platform_version: str
    runtime: str                    # local | docker
    metrics_url: str
    grpc_url: str                   # platforms that serve gRPC too
    ready_path: str
    started_at: float               # epoch seconds
    pid: int                        # local runtime: the server's process group
    container_id: str               # docker runtime
    cold_start_s: float
    ready_at: float
    device: str                     # where the server runs the model (platforms.DeviceKind)
    accelerator: str                # on a GPU: the library running the model, as the server says
    sharing: str                    # how it shares its GPU (gpu_sharing.Sharing); absent: none
    server_cpus: str                # the CPUs it is kept on (resources.server_cpus); absent: any
    mps: dict[str, str]             # sharing "mps": the daemon's directories (gpu_sharing)
    mps_started_at: float
    error: str
    stopped_at: float


class LoadPoint(TypedDict):
    """One measurement point in `load.json`; its requests are in points/<point>.npz."""

    point: int
    batch_size: int
    arrival: str
    concurrency: int | None
    target_rate_rps: float | None
    started_ns: int
    ended_ns: int
    stop_reason: str
    complete: bool
    client_cpu_s: float
    host_stall_pct: float
    issuer_nice: int                        # the load generator's niceness during the point
    issuer_realtime: int | None             # its SCHED_FIFO priority; None: normal policy
    resent_requests: NotRequired[int]       # runner.PhaseRecords; absent from older load.json
    n_requests: int
    stable: bool | None
    stability_reasons: list[str]
    # The server's own queue / compute split (None where the platform reports none);
    # absent from a load.json of before these were measured.
    server_requests: NotRequired[int | None]
    server_queue_ms: NotRequired[float | None]
    server_compute_ms: NotRequired[float | None]
    # where the server times each request's whole stay: the rest of it (server_stats.py)
    server_handling_ms: NotRequired[float | None]
    # where the server times it: the mean wait for a request's body after its head
    server_receive_ms: NotRequired[float | None]
    # the client's own time inside the latency (analysis.summary.client_timing_ms)
    client_send_ms: NotRequired[float | None]
    client_receive_ms: NotRequired[float | None]
    # Through an emulated link (spec.network): the mean transmit time each way of the
    # point's ok requests (network.profiles.transmit_means_ms); absent on the loopback.
    transmit_up_ms: NotRequired[float | None]
    transmit_down_ms: NotRequired[float | None]
    link_wait_ms: NotRequired[float | None]  # per request, both ways (network.link)
    # With a pipeline: mean processing time per ok request, on the client (outside the
    # measured latency) or in the server (its counters); absent where it did not run.
    client_preprocess_ms: NotRequired[float | None]
    client_postprocess_ms: NotRequired[float | None]
    server_preprocess_ms: NotRequired[float | None]
    server_postprocess_ms: NotRequired[float | None]
    # The point as a rung of its family's load ladder (inferbench/load/ladder.py) and the
    # load stage's own judgement of it (analysis.capacity.judge_rung); absent from a
    # load.json of before ladders.
    rung: NotRequired[int]                  # its index in the family, from 0
    ladder_phase: NotRequired[str]          # single | list | geometric | bisect
    rung_holds: NotRequired[bool]
    rung_reason: NotRequired[str | None]    # why it does not hold; None when it holds
    rung_latency_at_slo_ms: NotRequired[float | None]
    rung_achieved_rps: NotRequired[float]
    rung_sent_rps: NotRequired[float | None]  # the rate the schedule actually sent
    # The family's prediction at this point's offered rate (None: no prediction, not a
    # Poisson rate, or beyond the predicted capacity); absent before predictions.
    predicted_mean_ms: NotRequired[float | None]
    predicted_p99_ms: NotRequired[float | None]


class FamilyPrediction(TypedDict):
    """A family's light profile and the latency curve it predicts (analysis/prediction.py),
    taken before its ladder; the report recomputes the curve from `levels`."""

    batch_size: int
    parallelism: int                # c: the configuration's instances
    dynamic_batching: bool
    profile_s: float                # wall time the profile took
    levels: list[dict]              # prediction.Level.to_dict(), 1..c+2 (or more) in flight
    model: dict | None              # analysis.prediction.ServiceModel.to_dict()
    slo_capacity_rps: float | None  # the highest Poisson rate predicted within the SLO
    guided_start: float | None      # where the search started because of it (None: unguided)
    error: str | None               # why there is no prediction (profiling failed, ...)


class LadderSummary(TypedDict):
    """How one family's ladder went, as the load stage saw it (the analysis derives the
    capacity from the points themselves, with the same rung rule)."""

    batch_size: int
    mode: str                       # single | list | search
    end: str                        # why it stopped: inferbench.load.ladder.LadderEnd
    bound: bool                     # stopped by a cap: last_good is only a lower bound
    last_good: float | None         # the highest load that held
    first_bad: float | None         # the lowest load above it that did not
    first_bad_reason: str | None
    rungs: int
    points: list[int]
    elapsed_s: float


class LoadSummary(TypedDict):
    """`load.json` of one server configuration, rewritten after every point."""

    platform: str
    config: int
    points: list[LoadPoint]
    samples_file: str
    ladders: NotRequired[list[LadderSummary]]  # per family that ended; absent before ladders
    # per family profiled before its ladder; absent when ladder.predict is off
    predictions: NotRequired[list[FamilyPrediction]]
    # the emulated link every request crossed (LinkProcess.describe); absent: the loopback
    network: NotRequired[dict]
    # the CPUs the load generator ran on, kept off the server's (resources.server_cpus)
    load_cpus: NotRequired[str]
    error: NotRequired[str]   # the exception that ended the load stage early


def read_endpoint(path: Path) -> Endpoint | None:
    return cast("Endpoint | None", read_json(path))


def read_load_summary(path: Path) -> LoadSummary | None:
    return cast("LoadSummary | None", read_json(path))
