"""`inferbench predict`: profile a running endpoint lightly, then predict its latency under
Poisson load with a queueing model (analysis/prediction.py), like `inferbench load` needs
no Airflow and no database."""

from __future__ import annotations

import argparse
from typing import Any

from analysis.prediction import (
    APPROXIMATIONS,
    BEYOND_PROBES_NOTE,
    IDLE_LEVEL,
    Prediction,
    predict,
)
from inferbench.errors import InferBenchError
from inferbench.load.profile import profile_levels
from inferbench.load.protocols import get_protocol
from inferbench.load.standalone import build_target_and_batches, run_on_cpus

# A level's whole latency law and the loaded probes' per-request samples: kept where the
# pipeline stores the profile, left out of the answer.
PER_REQUEST = ("quantiles_ms", "arrivals_ms", "latencies_ms")
# Utilisations of the default curve: light load up to close to capacity.
DEFAULT_RHOS = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


def _rates(args: argparse.Namespace) -> list[float] | None:
    if args.rates is None:
        return None
    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        raise InferBenchError(f"--rates {args.rates!r} is not a comma list of numbers; fix: "
                              "e.g. --rates 50,100,200") from None
    bad = [r for r in rates if not r > 0]
    if not rates or bad:
        raise InferBenchError(f"--rates {args.rates!r}: every rate must be > 0 req/s; fix: "
                              "e.g. --rates 50,100,200")
    return rates


def check_args(args: argparse.Namespace) -> list[float] | None:
    """Every option checked before any request is sent; the rates asked for, if any."""
    if args.max_concurrency < 1:
        raise InferBenchError(f"--max-concurrency {args.max_concurrency!r} must be >= 1 (the "
                              "server's parallelism); fix: e.g. its instance count")
    if not args.profile_s > 0:
        raise InferBenchError(f"--profile-s {args.profile_s!r} must be > 0; fix: e.g. 3")
    if args.approximation not in APPROXIMATIONS:
        raise InferBenchError(f"--approximation {args.approximation!r} is not one of "
                              f"{', '.join(APPROXIMATIONS)}")
    if args.slo_ms is not None and not args.slo_ms > 0:
        raise InferBenchError(f"--slo-ms {args.slo_ms!r} must be > 0")
    if not 0 < args.slo_percentile < 100:
        raise InferBenchError(f"--slo-percentile {args.slo_percentile!r} must be in (0, 100)")
    return _rates(args)


def prediction_dict(prediction: Prediction, rates: list[float] | None,
                    slo_ms: float | None, slo_percentile: float) -> dict[str, Any]:
    """The JSON answer: service per closed-loop level, the idle-arrival level (or None),
    the loaded probes' levels (half capacity first), the model, the curve and the
    capacity."""
    model = prediction.model
    summaries = {lv.in_flight: {k: v for k, v in lv.to_dict().items() if k not in PER_REQUEST}
                 for lv in prediction.levels}
    idle = summaries.pop(IDLE_LEVEL, None)
    loaded = [summaries.pop(k) for k in sorted(summaries, reverse=True) if k < IDLE_LEVEL]
    out: dict[str, Any] = {"service_ms": list(summaries.values()), "idle_arrivals": idle,
                           "loaded_probes": loaded, "model": model.to_dict(), "curve": [],
                           "capacity": None}
    if model.unmodelled:
        return out
    if rates is None:
        rates = [round(rho * model.capacity_rps, 3) for rho in DEFAULT_RHOS]
    pct = slo_percentile if slo_percentile != 99.0 else None
    out["curve"] = [p.to_dict() for p in prediction.curve(rates, pct)]
    if slo_ms is not None:
        cap = prediction.capacity_rps(slo_ms, slo_percentile)
        out["capacity"] = {"slo_ms": slo_ms, "percentile": slo_percentile,
                           "rate_rps": None if cap is None else round(cap, 3)}
    return out


def run_predict(args: argparse.Namespace) -> dict[str, Any]:
    """Profile the endpoint (on the --cpus given) and predict its curve."""
    return run_on_cpus(args, _run_predict)


def _run_predict(args: argparse.Namespace) -> dict[str, Any]:
    rates = check_args(args)
    protocol = get_protocol(args.protocol)
    target, batches = build_target_and_batches(args)
    protocol.probe(target, batches[0])
    requests = [protocol.build(target, b) for b in batches]
    log = None if args.json else (lambda line: print(line, flush=True))
    levels = profile_levels(requests, args.max_concurrency, profile_s=args.profile_s,
                            warmup_s=args.warmup, request_timeout_s=args.timeout,
                            seed=args.seed, log=log, open_loop_probes=args.open_loop_probes,
                            dynamic_batching=args.dynamic_batching)
    prediction = predict(levels, args.max_concurrency, approximation=args.approximation,
                         dynamic_batching=args.dynamic_batching)
    out = prediction_dict(prediction, rates, args.slo_ms, args.slo_percentile)
    out["settings"] = {"endpoint": args.endpoint, "protocol": args.protocol,
                       "model": args.model, "batch_size": args.batch_size,
                       "max_concurrency": args.max_concurrency, "profile_s": args.profile_s,
                       "open_loop_probes": args.open_loop_probes}
    return out


def format_prediction(out: dict[str, Any]) -> str:
    model = out["model"]
    lines = []
    if model["unmodelled"]:
        lines.append(f"not predicted: {model['unmodelled']}")
        return "\n".join(lines)
    lines.append(f"model: {model['name']}")
    lines.append("  service ms per worker (closed loop): "
                 f"{', '.join(f'{d:g}' for d in model['service_ms'])}"
                 f"; capacity {model['capacity_rps']:.1f} req/s")
    lines += [f"  caveat: {c}" for c in model["caveats"]]
    lines.append("| rate (req/s) | rho | mean (ms) | p99 (ms) |")
    lines.append("|---:|---:|---:|---:|")
    for p in out["curve"]:
        def ms(v: float | None) -> str:
            return "unstable" if v is None else f"{v:.2f}"
        mark = " *" if p.get("beyond_probes") else ""
        lines.append(f"| {p['rate_rps']:g}{mark} | {p['rho']:.2f} | {ms(p['mean_ms'])} | "
                     f"{ms(p['p99_ms'])} |")
    if any(p.get("beyond_probes") for p in out["curve"]):
        last = model["open_loop_factors"][-1]["rate_rps"]
        lines.append(f"* {BEYOND_PROBES_NOTE.format(rate=last)}")
    cap = out["capacity"]
    if cap is not None:
        rate = cap["rate_rps"]
        lines.append(f"highest rate with p{cap['percentile']:g} <= {cap['slo_ms']:g} ms: "
                     + ("none (even light load misses it)" if rate is None
                        else f"{rate:.1f} req/s"))
    return "\n".join(lines)
