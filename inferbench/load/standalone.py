"""`inferbench load`: benchmark an already-running endpoint, like perf_analyzer does.

No Airflow, no database: build the requests for the chosen protocol, check one answer,
warm up, measure one point under the stop rule, and summarise it with the same analysis
functions (exact percentiles, their confidence bounds, a lossless HdrHistogram) and the
same VALID / INVALID rules as a pipeline run.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import ValidationError

from inferbench.cpu_pinning import check_usable, format_cpu_list, pinned
from inferbench.errors import InferBenchError
from inferbench.load import v2protocol
from inferbench.load.arrivals import schedule_for
from inferbench.load.http import resent_note
from inferbench.load.priority import issuer_priority
from inferbench.load.protocols import Target, get_protocol
from inferbench.load.runner import PhaseRecords, StopRule, run_point
from inferbench.models import signature
from inferbench.models.signature import Fill, TensorSpec
from inferbench.spec import WorkloadSpec

DISTINCT_PAYLOADS = 8
# Spec field -> command-line flag, so a validation error names what the user typed.
FLAGS = {"rate_rps": "--rate", "concurrency": "--concurrency", "burstiness": "--burstiness",
         "peak_rate_rps": "--peak-rate", "change_at_s": "--change-at",
         "change_duration_s": "--change-duration", "trace_path": "--trace", "seed": "--seed",
         "arrival": "--arrival"}


def workload_from_args(args: argparse.Namespace) -> WorkloadSpec:
    fields = {"arrival": args.arrival, "rate_rps": args.rate, "concurrency": args.concurrency,
              "burstiness": args.burstiness, "peak_rate_rps": args.peak_rate,
              "change_at_s": args.change_at, "change_duration_s": args.change_duration,
              "trace_path": args.trace, "seed": args.seed}
    try:
        return WorkloadSpec.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            for field, flag in FLAGS.items():
                msg = msg.replace(f'"{field}": ', f"{flag} ").replace(field, flag)
            where = ".".join(str(p) for p in err["loc"])
            lines.append(f"- {FLAGS.get(where, where) + ': ' if where else ''}{msg}"
                         + (f" (got {err['input']!r})" if where else ""))
        raise InferBenchError("bad load options:\n" + "\n".join(lines)) from None


def build_target_and_batches(args: argparse.Namespace
                             ) -> tuple[Target, list[np.ndarray] | list[dict]]:
    if args.batch_size < 1:
        raise InferBenchError(f"--batch-size {args.batch_size!r} must be >= 1")
    kserve = args.protocol.startswith("kserve-v2")
    if get_protocol(args.protocol).needs_model and not args.model:
        raise InferBenchError(f"--protocol {args.protocol} needs --model; fix: add --model NAME")
    input_name, output_name, dtype = args.input_name, args.output_name, np.float32
    shape = None
    if args.input_shape:
        try:
            shape = [int(x) for x in args.input_shape.split(",")]
        except ValueError:
            raise InferBenchError(f"--input-shape {args.input_shape!r} is not a comma list of "
                                  "integers; fix: e.g. 3,32,32") from None
    if args.inputs:
        return _target_and_named_batches(args, signature.from_text(args.inputs), output_name)
    if kserve and (shape is None or input_name is None or output_name is None):
        meta = get_protocol(args.protocol).model_metadata(args.endpoint, args.model)
        if len(meta["inputs"]) > 1 and not (args.input_shape or args.input_name):
            return _target_and_named_batches(args, _metadata_inputs(meta), output_name
                                             or meta["outputs"][0]["name"])
        first = meta["inputs"][0]
        input_name = input_name or first["name"]
        output_name = output_name or meta["outputs"][0]["name"]
        dtype = v2protocol.DTYPES.get(first.get("datatype", "FP32"), np.float32)
        if shape is None:
            shape = _sample_dims(first)
            if any(d < 0 for d in shape):
                raise InferBenchError(f"input {input_name!r} has a variable shape {shape}; "
                                      "fix: give --input-shape")
    if shape is None:
        raise InferBenchError(f"--protocol {args.protocol} needs --input-shape (e.g. 3,32,32)")
    target = Target(args.endpoint, args.model, input_name or "INPUT0", output_name or "OUTPUT0")
    rng = np.random.default_rng(args.seed * 7919 + args.batch_size)
    batches = [rng.standard_normal((args.batch_size, *shape)).astype(dtype)
               for _ in range(DISTINCT_PAYLOADS)]
    return target, batches


def _sample_dims(entry: dict[str, Any]) -> list[int]:
    """One sample's shape of a metadata input: its shape without the batch dimension (-1),
    which it includes when the model batches."""
    shape = entry["shape"]
    return shape[1:] if shape and shape[0] == -1 else shape


def _metadata_inputs(meta: dict[str, Any]) -> tuple[TensorSpec, ...]:
    """Every input the model's metadata lists, as a signature (float32 and int64 only)."""
    dtypes = {v: k for k, v in signature.DTYPES.items()}
    inputs = []
    for entry in meta["inputs"]:
        dims = _sample_dims(entry)
        if any(d < 0 for d in dims) or entry.get("datatype") not in dtypes:
            raise InferBenchError(f"input {entry['name']!r} is {entry.get('datatype')} of shape "
                                  f"{dims}; fix: give --inputs with a fixed shape and float32 "
                                  "or int64 for each input")
        inputs.append(TensorSpec(entry["name"], dtypes[entry["datatype"]], tuple(dims)))
    return tuple(inputs)


def _target_and_named_batches(args: argparse.Namespace, inputs: tuple[TensorSpec, ...],
                              output_name: str | None) -> tuple[Target, list[dict]]:
    """Batches of every input by name: float32 ones normal, int64 ones all ones (a valid
    token id and attention mask for any vocabulary)."""
    inputs = tuple(replace(t, fill=Fill.MASK) if t.dtype == "int64" else t for t in inputs)
    target = Target(args.endpoint, args.model, inputs[0].name, output_name or "OUTPUT0")
    rng = np.random.default_rng(args.seed * 7919 + args.batch_size)
    return target, [signature.sample_inputs(inputs, args.batch_size, rng)
                    for _ in range(DISTINCT_PAYLOADS)]


def summarise(records: PhaseRecords, *, open_loop: bool, rule: StopRule, late_ms: float,
              max_late_pct: float) -> dict[str, Any]:
    """The run's summary dict: throughput, exact latency percentiles with confidence bounds,
    late sends, client CPU, and the verdict with its reasons."""
    from analysis.percentiles import hdr_encode
    from analysis.summary import summarize_point
    from analysis.verdict import judge_point

    a = records.arrays()
    summary = summarize_point(a["scheduled_ns"], a["sent_ns"], a["done_ns"], a["status"],
                              started_ns=records.started_ns, ended_ns=records.ended_ns,
                              open_loop=open_loop, late_threshold_ms=late_ms)
    verdict, reasons, _ = judge_point(
        summary, complete=records.complete, stop_reason=records.stop_reason,
        min_duration_s=rule.min_duration_s, min_requests=rule.min_requests,
        slo_percentile=99.0, slo_latency_ms=math.inf, open_loop=open_loop,
        max_late_pct=max_late_pct)
    if records.stable is False:
        if verdict != "INVALID":
            verdict, reasons = "INVALID", []  # the checks it passed are no longer the news
        reasons = [*reasons, *("unstable: " + r for r in records.stability_reasons)]
    reasons = [*reasons, *resent_note(records.resent_requests)]
    ok = (a["status"] == 200) & (a["done_ns"] >= 0)
    ttfb_ms = (a["first_byte_ns"][ok] - a["scheduled_ns"][ok]) / 1e6
    n = len(records)
    out = summary.to_dict()
    out.update({
        "verdict": verdict, "reasons": reasons, "stop_reason": records.stop_reason,
        "stable": records.stable,
        "time_to_first_byte_ms": {"p50": float(np.median(ttfb_ms)) if ttfb_ms.size else None},
        "client_cpu_s": records.client_cpu_s, "resent_requests": records.resent_requests,
        "client_cpu_ms_per_request": 1e3 * records.client_cpu_s / n if n else None,
        "bytes_sent": int(a["bytes_sent"].sum()), "bytes_received": int(a["bytes_received"]
                                                                        .sum()),
        "hdr_histogram_us": hdr_encode(summary.latencies_ms * 1000.0) if summary.n_ok
        else None,
    })
    return out


def run_on_cpus(args: argparse.Namespace,
                work: Callable[[argparse.Namespace], dict[str, Any]]) -> dict[str, Any]:
    """`work(args)` on the CPUs of --cpus (anywhere without it); its result's settings say
    where it ran (`load_cpus`)."""
    cpus = None if args.cpus is None else check_usable("--cpus", args.cpus)
    with pinned(cpus):
        out = work(args)
    out["settings"]["load_cpus"] = None if cpus is None else format_cpu_list(cpus)
    return out


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    """Drive the endpoint with the arguments' workload, on the --cpus given."""
    return run_on_cpus(args, _run_load)


def _run_load(args: argparse.Namespace) -> dict[str, Any]:
    workload = workload_from_args(args)
    protocol = get_protocol(args.protocol)
    target, batches = build_target_and_batches(args)
    protocol.probe(target, batches[0])
    requests = [protocol.build(target, b) for b in batches]
    max_duration = args.max_duration if args.max_duration is not None else 3 * args.duration
    if max_duration < args.duration:
        raise InferBenchError(f"--max-duration {max_duration!r} is below --duration "
                              f"{args.duration!r}; fix: raise --max-duration")
    windows = args.stability_windows
    rule = StopRule(args.duration, args.min_requests, max_duration, windows,
                    args.window if args.window else args.duration / max(windows, 1),
                    args.tolerance_pct)
    t0 = time.time()
    nice = realtime = None  # several issuer processes keep the priority they started with
    if args.processes > 1:
        if not workload.open_loop:
            raise InferBenchError(f"--processes {args.processes} is for open-loop arrivals; "
                                  "fix: raise --concurrency instead")
        from inferbench.load.multiprocess import run_point_processes

        records = run_point_processes(
            requests, schedule=lambda seed: schedule_for(workload, seed),
            processes=args.processes, seed=workload.seed, warmup_s=args.warmup, rule=rule,
            request_timeout_s=args.timeout)
    else:
        with issuer_priority(args.issuer_nice, args.issuer_realtime) as priority:
            nice, realtime = priority.nice, priority.realtime
            records = run_point(
                requests, concurrency=None if workload.open_loop else workload.concurrency,
                schedule=(lambda seed: schedule_for(workload, seed)) if workload.open_loop
                else None, seed=workload.seed, warmup_s=args.warmup, rule=rule,
                request_timeout_s=args.timeout)
    if args.records is not None:
        np.savez(args.records, **records.arrays())
    out = summarise(records, open_loop=workload.open_loop, rule=rule, late_ms=args.late_ms,
                    max_late_pct=args.max_late_pct)
    out["settings"] = {"endpoint": args.endpoint, "protocol": args.protocol,
                       "model": args.model, "batch_size": args.batch_size,
                       "workload": workload.model_dump(mode="json"),
                       "min_duration_s": rule.min_duration_s, "min_requests": rule.min_requests,
                       "max_duration_s": rule.max_duration_s,
                       "stability_windows": rule.stability_windows, "window_s": rule.window_s,
                       "tolerance_pct": rule.tolerance_pct, "warmup_s": args.warmup,
                       "started_at_unix_s": t0, "issuer_nice": nice,
                       "issuer_realtime": realtime}
    return out


def format_load_summary(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]

    def ms(key: str) -> str:
        return "-" if lat.get(key) is None else f"{lat[key]:.2f}"

    ci = s["p99_ci_ms"]
    w = s["settings"]["workload"]
    lines = [
        f"{s['verdict']}: {s['settings']['endpoint']} ({s['settings']['protocol']}), arrival "
        f"{w['arrival']}, {s['n_ok']} ok / {s['n_failed']} failed in {s['duration_s']:.1f} s "
        f"(stop: {s['stop_reason']})",
        f"  throughput {s['throughput_rps']:.1f} req/s; latency ms mean {ms('mean')} p50 "
        f"{ms('p50')} p90 {ms('p90')} p99 {ms('p99')} p99.9 {ms('p99.9')} max {ms('max')}",
        "  p99 95 % interval: " + " .. ".join("-" if x is None else f"{x:.2f}" for x in ci)
        + " ms",
        f"  late sends {s['late_send_pct']:.2f} % (> {s['late_threshold_ms']:g} ms); client CPU "
        + ("-" if s["client_cpu_ms_per_request"] is None
           else f"{s['client_cpu_ms_per_request']:.3f} ms/request"),
    ]
    lines += [f"  - {r}" for r in s["reasons"]]
    return "\n".join(lines)
