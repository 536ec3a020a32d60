"""load: drive the spec's workload at one platform: per batch size a load ladder (one
point, a list of loads, or a search for the highest load within the SLO), all on the
server that is already running.

When the spec predicts (ladder.predict; by default a search with Poisson arrivals), each
family is first profiled lightly and its latency curve predicted by a queueing model
(stages/family_prediction.py): a search then starts at the predicted SLO crossing, and
every rung stores the predicted mean and p99 at its rate beside what was measured.

Every rung is a point: its per-request records are saved as soon as it ends and `load.json`
is rewritten after every rung, so a failure later keeps what was already measured. Each
rung's line in the log says what was offered, what the server achieved, the SLO percentile
and whether the rung held, so the task log shows the search as it went.

`run` is the stage entry point; it resolves the configuration and reads its endpoint, then
`drive` does the work (the measure stage calls `drive` with the endpoint it just started).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import NamedTuple, TypedDict

import numpy as np

from analysis.summary import PointSummary, client_timing_ms
from analysis.verdict import VALID
from inferbench import cpu_pinning, user_files
from inferbench.backends import get_backend
from inferbench.backends.base import Backend
from inferbench.backends.server_stats import ServerStats, split_ms
from inferbench.errors import InferBenchError
from inferbench.load.arrivals import schedule_for
from inferbench.load.ladder import (
    Ladder,
    LadderMode,
    LadderOutcome,
    LadderPlan,
    Phase,
    Rung,
    RungCheck,
    judge_summary,
)
from inferbench.load.priority import issuer_priority
from inferbench.load.protocols import Protocol, Target, get_protocol
from inferbench.load.runner import PhaseRecords, Request, StopRule, run_point
from inferbench.load.sequence_lengths import (
    VariablePayloads,
    load_lengths,
    variable_payloads,
)
from inferbench.metrics.host_noise import host_stall_pct
from inferbench.metrics.sampler import ResourceSampler
from inferbench.models.signature import sample_inputs
from inferbench.network.link import LinkProcess, host_port, link_wait_ms
from inferbench.network.profiles import profile_of, transmit_means_ms
from inferbench.processing.client import (
    PipelinePayloads,
    client_means_ms,
    client_postprocess_ms,
    pipeline_payloads,
    tokenizer_file,
)
from inferbench.server_grid import ResolvedConfig, resolve_config
from inferbench.spec import (
    BenchmarkSpec,
    LengthDistribution,
    ProcessingSide,
    Transport,
    WorkloadSpec,
)
from inferbench.stages.common import (
    Endpoint,
    LadderSummary,
    LoadPoint,
    LoadSummary,
    StageContext,
    read_endpoint,
    run_signature,
    save_point_records,
    write_json,
)
from inferbench.stages.family_prediction import predict_family, predicted_at
from inferbench.stages.point_verdict import judge_point_records
from inferbench.stages.serve import server_exit

DISTINCT_PAYLOADS = 8  # requests rotate over a few seeded inputs, encoded once up front
# How long to wait at most for a server to answer what a rung left queued (see drain).
DRAIN_MAX_S = 60.0


def _batches(ctx: StageContext, batch_size: int
             ) -> tuple[list[dict[str, np.ndarray]], VariablePayloads | PipelinePayloads | None]:
    """The seeded inputs of one point by input name (the same for either transport), and
    what each request carries beside them: its sequence length when the workload varies
    it, the client's processing time with a pipeline."""
    seed = ctx.spec.workload.seed * 7919 + batch_size
    rng = np.random.default_rng(seed)
    inputs = run_signature(ctx).inputs
    if ctx.spec.pipeline_input is not None:
        pipeline = ctx.spec.pipeline
        on_client = pipeline.preprocess is ProcessingSide.CLIENT
        payloads = pipeline_payloads(
            ctx.spec.pipeline_input, on_client, inputs, batch_size, DISTINCT_PAYLOADS, seed,
            image_size=(pipeline.image.width, pipeline.image.height, pipeline.image.quality),
            words=(pipeline.text.words_min, pipeline.text.words_max),
            tokenizer=(tokenizer_file(ctx.run_dir.path, inputs, ctx.spec.model.seed)
                       if on_client and ctx.spec.pipeline_input == "text" else None))
        return payloads.batches, payloads
    lengths = ctx.spec.workload.sequence_length
    if lengths is None:
        return [sample_inputs(inputs, batch_size, rng)
                for _ in range(DISTINCT_PAYLOADS)], None
    trace = (load_lengths(lengths.trace_path, inputs[0].shape[0])
             if lengths.distribution is LengthDistribution.TRACE else None)
    variable = variable_payloads(inputs, lengths, batch_size, rng, trace)
    return variable.batches, variable


class Counters(NamedTuple):
    """What is read before and after a point's measured phase: the server's own counters
    and the emulated link's (None: the platform reports none, or there is no link)."""

    server: ServerStats | None
    link: dict | None


class PointBrief(TypedDict):
    """A measured point as the stage reports it (load.json has the whole `LoadPoint`)."""

    point: int
    batch_size: int
    n_requests: int
    stop_reason: str


class LoadResult(TypedDict):
    platform: str
    config: int
    points: list[PointBrief]
    ladders: list[LadderSummary]


def protocol_target(ctx: StageContext, endpoint: Endpoint, backend: Backend
                    ) -> tuple[Protocol, Target]:
    """The backend's client for the spec's transport, aimed at the served model."""
    if ctx.spec.workload.transport is Transport.GRPC:
        if not endpoint.get("grpc_url") or backend.grpc_protocol is None:
            raise InferBenchError(f"platform {endpoint['platform']!r} has no gRPC endpoint; "
                                  'fix: set workload.transport to "http"')
        name, url = backend.grpc_protocol, endpoint["grpc_url"]
    else:
        name, url = backend.protocol, endpoint["url"]
    return get_protocol(name), Target(url, endpoint["model_name"], backend.input_name,
                                      backend.output_name)


def build_requests(ctx: StageContext, protocol: Protocol, target: Target, batch_size: int
                   ) -> tuple[list[Request], VariablePayloads | PipelinePayloads | None]:
    """The point's requests, encoded once, and what each carries beside its tensors (see
    `_batches`)."""
    batches, extras = _batches(ctx, batch_size)
    return [protocol.build(target, batch) for batch in batches], extras


def expected_outputs(spec: BenchmarkSpec, batch_size: int, num_outputs: int) -> tuple[int, int]:
    """The shape of a good answer's output: every class's score, or the top-k labels of a
    server that post-processes."""
    pipeline = spec.pipeline
    if pipeline is not None and pipeline.postprocess is ProcessingSide.SERVER:
        return batch_size, min(pipeline.top_k, num_outputs)
    return batch_size, num_outputs


def check_response(protocol: Protocol, request: Request, expected: tuple[int, int]) -> None:
    """One request before measuring: a misconfigured server fails here, not as 100 % errors."""
    status, headers, body = protocol.send_once(request)
    protocol.check(status, headers, body, expected[0])
    shapes = {k: v.shape for k, v in protocol.decode(headers, body).items()}
    if expected not in shapes.values():
        raise InferBenchError(f"server answered {request.url} with outputs {shapes}, expected "
                              f"shape {expected}")


def time_client_postprocess(spec: BenchmarkSpec, protocol: Protocol, requests: list[Request],
                            payloads: PipelinePayloads) -> None:
    """With post-processing on the client: each payload's answer, once, and the client's
    time to label it (processing/client.py)."""
    answers = []
    for request in requests:
        status, headers, body = protocol.send_once(request)
        answers.append(next(iter(protocol.decode(headers, body).values())))
    payloads.postprocess_ms = client_postprocess_ms(answers, spec.pipeline.top_k)


def drain(protocol: Protocol, request: Request, timeout_s: float,
          max_wait_s: float = DRAIN_MAX_S) -> float:
    """Wait until the server has answered what a rung left queued; return the seconds it
    took. A request the client gave up on (timed out) is still in the server's queue, and
    the next rung must not pay for it: one probe at a time, until one is answered."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        try:
            if protocol.send_once(request, timeout_s)[0] == 200:
                break
        except InferBenchError:
            time.sleep(0.5)  # not answering at all: do not spin on a refused connection
    return time.monotonic() - started


def rung_workload(workload: WorkloadSpec, rung: Rung) -> WorkloadSpec:
    """The workload of one rung: the spec's, at the rung's offered load. A single point
    keeps the spec's workload as it is (e.g. a step's base rate, a trace)."""
    if rung.phase is Phase.SINGLE:
        return workload
    field = "rate_rps" if workload.open_loop else "concurrency"
    load = rung.offered if workload.open_loop else int(rung.offered or 1)
    return workload.model_copy(update={field: load})


def ladder_summary(batch_size: int, mode: str, outcome: LadderOutcome,
                   points: list[int]) -> LadderSummary:
    return {"batch_size": batch_size, "mode": mode, "end": outcome.end.value,
            "bound": outcome.bound, "last_good": outcome.last_good,
            "first_bad": outcome.first_bad, "first_bad_reason": outcome.first_bad_reason,
            "rungs": outcome.rungs, "points": points, "elapsed_s": round(outcome.elapsed_s, 3)}


def _load_text(load: float | None, open_loop: bool) -> str:
    if load is None:
        return "the workload's own rate"
    return f"{load:g} req/s" if open_loop else f"{load:g} clients"


def rung_line(batch_size: int, rung: Rung, check: RungCheck, open_loop: bool,
              slo_percentile: float, summary: PointSummary, measured_again: bool) -> str:
    """The log line of one measured rung (what the task log shows of it), e.g. "b8 rung 3
    (bisect): 141.4 req/s offered, 140.2 sent, 139.9 req/s achieved, p50 5.1 ms, p99
    12.3 ms, late sends 0.2 %, VALID - holds"."""
    judged = check.slo
    sent = f", {judged.sent_rps:.1f} sent" if judged.sent_rps else ""
    latency = ("-" if judged.latency_at_slo_ms is None
               else f"{judged.latency_at_slo_ms:.1f} ms")
    p50 = summary.latency_ms.get("p50")
    median = "-" if p50 is None else f"{p50:.1f} ms"
    # A closed loop sends when a client is free: no send is late.
    late = f", late sends {summary.late_send_pct:.1f} %" if open_loop else ""
    verdict = "holds" if check.holds else f"fails: {check.reason}"
    if measured_again:
        verdict += " (measuring it again)"
    return (f"b{batch_size} rung {rung.index} ({rung.phase.value}): "
            f"{_load_text(rung.offered, open_loop)} offered{sent}, "
            f"{judged.achieved_rps:.1f} req/s achieved, p50 {median}, p{slo_percentile:g} "
            f"{latency}{late}, {'VALID' if check.valid else 'INVALID'} - {verdict}")


def ladder_line(batch_size: int, outcome: LadderOutcome, open_loop: bool) -> str:
    """The log line of a family's ladder once it ended: what held, what failed, why it
    stopped."""
    if outcome.last_good is None:
        held = "nothing held"
    else:
        held = (("at least " if outcome.bound else "")
                + f"{_load_text(outcome.last_good, open_loop)} held")
    failed = ("" if outcome.first_bad is None else
              f", {_load_text(outcome.first_bad, open_loop)} failed "
              f"({outcome.first_bad_reason})")
    return (f"b{batch_size} ladder ended ({outcome.end.value}): {held}{failed}; "
            f"{outcome.rungs} rungs in {outcome.elapsed_s:.0f} s")


def run(ctx: StageContext, platform: str, config: int = 0) -> LoadResult:
    """The load stage: measure configuration `config` of `platform`, whose server the serve
    stage started."""
    resolved = resolve_config(ctx.spec, ctx.run_dir, platform, config)
    return drive(ctx, resolved, read_endpoint(resolved.files.endpoint))


def drive(ctx: StageContext, resolved: ResolvedConfig, endpoint: Endpoint | None
          ) -> LoadResult:
    """Per batch size, the spec's load ladder at the configuration's ready server
    (`endpoint`): one point per rung."""
    platform, config, files = resolved.platform, resolved.index, resolved.files
    if not endpoint or endpoint.get("status") != "ready":
        raise InferBenchError(f"platform {platform!r} has no ready server in run {ctx.run_id!r}"
                              " (see the serve task's log)")
    spec = ctx.spec
    earlier = files.set_aside(files.measurement_files)  # a retried load stage
    if earlier is not None:
        print(f"an earlier load attempt's files are kept in {earlier}", flush=True)
    files.points_dir.mkdir(exist_ok=True)
    summary: LoadSummary = {"platform": platform, "config": config, "points": [],
                            "samples_file": files.samples.name, "ladders": []}
    samples: list[dict] = []
    rule = StopRule(spec.min_duration_s, spec.min_requests, spec.max_duration_s,
                    spec.stability_windows, spec.stability_window_s, spec.stability_tolerance_pct)
    backend = get_backend(platform)
    protocol, target = protocol_target(ctx, endpoint, backend)
    with contextlib.ExitStack() as stack:
        if endpoint.get("server_cpus"):  # the load generator keeps off the server's CPUs
            load_cpus = cpu_pinning.split(endpoint["server_cpus"])[1]
            stack.enter_context(cpu_pinning.pinned(load_cpus))
            summary["load_cpus"] = cpu_pinning.format_cpu_list(load_cpus)
            print(f"server on CPUs {endpoint['server_cpus']}, load generator on CPUs "
                  f"{summary['load_cpus']}", flush=True)
        link_profile, link = profile_of(spec.network), None
        if link_profile is not None:  # every request of the stage crosses the link
            link = stack.enter_context(
                LinkProcess(link_profile, host_port(target.url), seed=spec.workload.seed))
            target = dataclasses.replace(target, url=link.url_for(target.url))
            summary["network"] = link.describe()
            note = summary["network"]["emulation_note"]
            print(f"through the emulated link {link_profile.name!r}: round trip "
                  f"{link_profile.rtt_ms:g} ms, {link_profile.uplink_mbps:g} Mbit/s up, "
                  f"{link_profile.bandwidth_mbps:g} Mbit/s down" + (f"; {note}" if note else ""),
                  flush=True)
        return _drive_families(ctx, resolved, endpoint, summary, samples, rule, backend,
                               protocol, target, link)


def _drive_families(ctx: StageContext, resolved: ResolvedConfig, endpoint: Endpoint,
                    summary: LoadSummary, samples: list[dict], rule: StopRule,
                    backend: Backend, protocol: Protocol, target: Target,
                    link: LinkProcess | None) -> LoadResult:
    """The ladders of every batch size, one point per rung, on `target`."""
    spec, files = ctx.spec, resolved.files
    platform, config = resolved.platform, resolved.index

    def read_counters() -> Counters:
        return Counters(backend.server_stats(endpoint["url"], endpoint["model_name"],
                                             endpoint.get("metrics_url")),
                        None if link is None else link.counters())

    plan = LadderPlan.from_spec(spec)
    open_loop = spec.workload.open_loop
    try:
        for batch_size in spec.batch_sizes:
            requests, extras = build_requests(ctx, protocol, target, batch_size)
            check_response(protocol, requests[0],
                           expected_outputs(spec, batch_size, run_signature(ctx).num_outputs))
            if spec.pipeline is not None and spec.pipeline.postprocess is ProcessingSide.CLIENT:
                if extras is None:  # post-processing alone: tensors in, labels made here
                    extras = PipelinePayloads([])
                time_client_postprocess(spec, protocol, requests, extras)
            family_plan, prediction = plan, None
            if spec.predicts:
                prediction, predicted = predict_family(spec, resolved, requests, batch_size)
                family_plan = plan.guided(predicted["slo_capacity_rps"])
                predicted["guided_start"] = family_plan.start if family_plan.guide else None
                summary.setdefault("predictions", []).append(predicted)
                write_json(files.load, summary)
            ladder, family_points, failed_before = Ladder(family_plan), [], 0
            for rung in ladder.rungs():
                started = time.monotonic()
                if failed_before:
                    drain(protocol, requests[0], spec.request_timeout_s)
                index = len(summary["points"])
                point, records = _measure_rung(
                    ctx, rung, index, batch_size, requests, endpoint, rule, samples,
                    read_counters)
                arrays = records.arrays()
                if extras is not None:  # each request's length or client time, by payload
                    arrays.update(extras.per_request(arrays["payload"]))
                    point.update(client_means_ms(arrays))
                point.update(client_timing_ms(arrays))
                save_point_records(files.point_records(index), arrays)
                if link is not None:
                    point.update(transmit_means_ms(link.profile, arrays))
                check, summary_of_rung = _check_rung(spec, arrays, records, rung, open_loop)
                judged = check.slo
                point.update({"rung": rung.index, "ladder_phase": rung.phase.value,
                              "rung_holds": check.holds, "rung_reason": check.reason,
                              "rung_latency_at_slo_ms": judged.latency_at_slo_ms,
                              "rung_achieved_rps": judged.achieved_rps,
                              "rung_sent_rps": judged.sent_rps,
                              **predicted_at(prediction, rung.offered)})
                summary["points"].append(point)
                family_points.append(index)
                write_json(files.samples, samples)
                write_json(files.load, summary)
                failed_before = judged.n_failed
                result = check.result(time.monotonic() - started)
                print(rung_line(batch_size, rung, check, open_loop, spec.slo.percentile,
                                summary_of_rung, ladder.repeats(rung, result)), flush=True)
                _check_server_alive(endpoint, index, judged.n_failed)
                ladder.report(result)
            outcome = ladder.outcome
            summary["ladders"].append(
                ladder_summary(batch_size, plan.mode.value, outcome, family_points))
            write_json(files.load, summary)
            if plan.mode is not LadderMode.SINGLE:
                print(ladder_line(batch_size, outcome, open_loop), flush=True)
    except BaseException as exc:  # a SIGTERMed stage too: what it measured is kept
        summary["error"] = f"{type(exc).__name__}: {exc}"
        gone = None if isinstance(exc, ServerExited) else server_exit(endpoint)
        if gone:  # e.g. the readiness check of the next family found no server
            summary["error"] += f" (the server {gone})"
        # A full disk may refuse these too; the files of the last rung then stand, and the
        # error that ended the stage is the one raised.
        with contextlib.suppress(OSError, InferBenchError):
            write_json(files.samples, samples)
            write_json(files.load, summary)
        raise
    return {"platform": platform, "config": config,
            "points": [{"point": p["point"], "batch_size": p["batch_size"],
                        "n_requests": p["n_requests"], "stop_reason": p["stop_reason"]}
                       for p in summary["points"]],
            "ladders": summary["ladders"]}


class ServerExited(InferBenchError):
    """The server ended while it was being measured: the rest of the ladder cannot run."""


def _check_server_alive(endpoint: Endpoint, point: int, n_failed: int) -> None:
    """After each rung: a server that died during it ends the load stage, naming how it
    ended, instead of measuring refused connections for the remaining rungs."""
    gone = server_exit(endpoint)
    if gone:
        raise ServerExited(
            f"the {endpoint['platform']} server {gone} during point {point} ({n_failed} "
            "requests of that point failed; they are recorded)"
            + (f"; see its log {endpoint['log']}" if endpoint.get("log") else ""))


def _check_rung(spec: BenchmarkSpec, arrays: dict[str, np.ndarray], records: PhaseRecords,
                rung: Rung, open_loop: bool) -> tuple[RungCheck, PointSummary]:
    """The rung judged as the analysis will judge its point: validity and the SLO rule, on
    one set of statistics (returned too, for the rung's log line)."""
    validity = judge_point_records(spec, arrays, started_ns=records.started_ns,
                                   ended_ns=records.ended_ns, complete=records.complete,
                                   stop_reason=records.stop_reason, open_loop=open_loop)
    judged = judge_summary(
        validity.summary, arrays, started_ns=records.started_ns, ended_ns=records.ended_ns,
        offered=(rung.offered if rung.offered is not None else 0.0), open_loop=open_loop,
        slo_percentile=spec.slo.percentile, slo_ms=spec.slo.latency_ms)
    valid = validity.verdict == VALID
    return RungCheck(judged, valid, () if valid else tuple(validity.reasons)), validity.summary


def _measure_rung(ctx: StageContext, rung: Rung, index: int, batch_size: int,
                  requests: list[Request], endpoint: Endpoint, rule: StopRule,
                  samples: list[dict], read_counters: Callable[[], Counters]
                  ) -> tuple[LoadPoint, PhaseRecords]:
    """Measure one rung as point `index`: warm-up (the family's first rung) or settle at
    the rung's own load, then the measured phase under the stop rule."""
    spec = ctx.spec
    workload = rung_workload(spec.workload, rung)
    stall_pct = host_stall_pct(spec.late_send_threshold_ms)
    # A server in its own container is not visible from this stage's container: its
    # process samples are missing there (host-wide samples are still taken).
    before: list[Counters] = []  # the server's and the link's counters after warm-up
    with ResourceSampler(endpoint.get("pid")) as sampler, issuer_priority() as priority:
        records = run_point(
            requests,
            concurrency=None if workload.open_loop else workload.concurrency,
            # Same seeds as before for poisson: the logged schedule is unchanged.
            schedule=((lambda seed: schedule_for(workload, seed, user_files.data_dirs()))
                      if workload.open_loop else None),
            seed=spec.workload.seed + index,
            # Later rungs run on a warm server: a short settle at their own load brings
            # its queue to that load's steady state instead of the previous rung's.
            warmup_s=spec.warmup_s if rung.index == 0 else spec.ladder.settle_s,
            rule=rule, request_timeout_s=spec.request_timeout_s,
            on_measure_start=lambda readings=before: readings.append(read_counters()))
    after = read_counters()
    server_split = split_ms(before[0].server if before else None, after.server)
    if after.link is not None:
        server_split.update(link_wait_ms(before[0].link if before else None, after.link))
    samples.extend(sampler.samples)
    point: LoadPoint = {
        "point": index, "batch_size": batch_size, "arrival": workload.arrival.value,
        "concurrency": workload.concurrency, "target_rate_rps": workload.rate_rps,
        "started_ns": records.started_ns, "ended_ns": records.ended_ns,
        "stop_reason": records.stop_reason, "complete": records.complete,
        "client_cpu_s": records.client_cpu_s, "host_stall_pct": stall_pct,
        "resent_requests": records.resent_requests, "issuer_nice": priority.nice,
        "issuer_realtime": priority.realtime,
        "n_requests": len(records), "stable": records.stable,
        "stability_reasons": records.stability_reasons, **server_split}
    return point, records
