"""The options of `inferbench load`, apart from its (numpy-heavy) implementation so that
building the CLI parser stays cheap for every other subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

# The registry only: it imports no client (numpy, gRPC) until one is asked for.
from inferbench.load.priority import DEFAULT_ISSUER_NICE, DEFAULT_ISSUER_REALTIME
from inferbench.load.protocols import BASE_URL, FULL_URL, GRPC_URL, PROTOCOLS

ARRIVALS = "closed_loop, poisson, constant, gamma, step, spike, ramp, trace"
DEFAULT_PROTOCOL = "kserve-v2"


def _names(endpoint: str) -> str:
    return " / ".join(name for name, entry in PROTOCOLS.items() if entry.endpoint == endpoint)


def protocol_help() -> str:
    """--protocol's help: every registered client and what it speaks."""
    listed = ", ".join(f"{name} ({entry.summary})" for name, entry in PROTOCOLS.items())
    return f"one of: {listed}; default {DEFAULT_PROTOCOL}"


def endpoint_help() -> str:
    return (f"{BASE_URL} for {_names(BASE_URL)}; {GRPC_URL} for {_names(GRPC_URL)}; "
            f"{FULL_URL} for {_names(FULL_URL)}")


def _fifo_priority(text: str) -> int:
    """A SCHED_FIFO priority (1-99), or 0 for the normal policy."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 99:
        raise argparse.ArgumentTypeError(f"{text!r} is not a real-time priority; fix: give "
                                         "0 (normal policy) or 1-99")
    return value


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """Which endpoint and model, and the request it is sent (`load` and `predict`)."""
    p.add_argument("--endpoint", required=True, help=endpoint_help())
    # No argparse `choices`: an unknown name is refused by the protocol registry, which
    # lists the known ones and exits 1 like every other bad option.
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, metavar="NAME",
                   help=protocol_help())
    p.add_argument("--model", default="", help="model name (every protocol but "
                   f"{_names(FULL_URL)})")
    p.add_argument("--input-name", default=None, help="input tensor name (kserve-v2*: read "
                   "from the model's metadata when not given)")
    p.add_argument("--output-name", default=None)
    p.add_argument("--input-shape", default=None, help="shape of one sample, e.g. 3,32,32 "
                   "(kserve-v2*: from the metadata when not given)")
    p.add_argument("--inputs", default=None, help="a model of several or integer inputs: "
                   "name:dtype:one sample's shape for each, ';' between them, e.g. "
                   "'input_ids:int64:128;attention_mask:int64:128' (float32 inputs get normal "
                   "values, int64 ones get ones: a valid token id and mask); kserve-v2*: read "
                   "from the metadata when it lists several inputs")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of the request inputs (and of "
                   "the arrivals)")
    p.add_argument("--timeout", type=float, default=10.0, help="request timeout, seconds")
    p.add_argument("--cpus", default=None, metavar="LIST", help="run the load generator on "
                   "these CPUs only, as Linux lists them (\"0\", \"0-3\"); start the server "
                   "on others (e.g. under taskset) so the two never take turns on one core")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_arguments(p)
    p.add_argument("--arrival", default="poisson", help=ARRIVALS)
    p.add_argument("--rate", type=float, default=None, help="open loop: requests/second")
    p.add_argument("--concurrency", type=int, default=None, help="closed_loop: in flight")
    p.add_argument("--burstiness", type=float, default=None, help="gamma: CV^2 of the gaps")
    p.add_argument("--peak-rate", type=float, default=None, help="step/spike/ramp peak rate")
    p.add_argument("--change-at", type=float, default=None, help="step/spike/ramp: seconds")
    p.add_argument("--change-duration", type=float, default=None, help="spike/ramp: seconds")
    p.add_argument("--trace", default=None, help="trace: CSV of timestamps [,payload id]")
    p.add_argument("--duration", type=float, default=10.0, help="minimum measured seconds")
    p.add_argument("--min-requests", type=int, default=100)
    p.add_argument("--max-duration", type=float, default=None, help="cap (default 3 x "
                   "--duration)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    p.add_argument("--stability-windows", type=int, default=3, help="last N windows must "
                   "agree (0: off)")
    p.add_argument("--window", type=float, default=None, help="window seconds (default "
                   "--duration / --stability-windows)")
    p.add_argument("--tolerance-pct", type=float, default=10.0)
    p.add_argument("--late-ms", type=float, default=1.0, help="a send this late is late")
    p.add_argument("--max-late-pct", type=float, default=1.0, help="more late sends than "
                   "this share makes the run INVALID")
    p.add_argument("--records", type=Path, default=None, help="save per-request records "
                   "(.npz: scheduled/sent/first-byte/done ns, status, bytes)")
    p.add_argument("--processes", type=int, default=1, help="open loop: issue from this many "
                   "processes (the schedule split by thinning; no window-stability rule)")
    p.add_argument("--issuer-nice", type=int, default=DEFAULT_ISSUER_NICE, help="the "
                   "issuer's niceness while it measures, where the host allows it (default "
                   f"{DEFAULT_ISSUER_NICE}: priority over a server on the same cores; 0 to "
                   "compare with tools run at the default priority)")
    p.add_argument("--issuer-realtime", type=_fifo_priority, default=DEFAULT_ISSUER_REALTIME,
                   metavar="0-99", help="the issuer thread's "
                   "SCHED_FIFO priority while it measures, where the host allows it (default "
                   f"{DEFAULT_ISSUER_REALTIME}: it runs the moment it wakes, ahead of a busy "
                   "server; 0: the normal policy)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    """`inferbench predict`: profile an endpoint lightly, then predict its latency curve."""
    add_target_arguments(p)
    p.add_argument("--max-concurrency", type=int, default=1, metavar="C",
                   help="the server's parallelism c (e.g. its model instances): profiled "
                   "with 1..c requests in flight, and c + 1, c + 2, ... for its capacity "
                   "(default 1)")
    p.add_argument("--profile-s", type=float, default=3.0, help="measured seconds per "
                   "profiling level (default 3)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before the "
                   "first level")
    p.add_argument("--rates", default=None, help="comma list of Poisson rates (req/s) to "
                   "predict; default: utilisation 0.1 to 0.95 of the profiled capacity")
    p.add_argument("--slo-ms", type=float, default=None, help="also predict the highest "
                   "rate whose --slo-percentile latency is within this many ms")
    p.add_argument("--slo-percentile", type=float, default=99.0)
    p.add_argument("--approximation", default="exact", help="M/D/c waiting time: exact "
                   "(Crommelin) or cosmetatos (closed form); default exact")
    p.add_argument("--dynamic-batching", action="store_true", help="the server merges "
                   "queued requests: the prediction is marked unmodelled")
    p.add_argument("--no-open-loop-probes", dest="open_loop_probes", action="store_false",
                   help="skip the two open-loop Poisson probes after the closed-loop levels "
                   "(what a request arriving at an idle server costs, and how much slower "
                   "the service is under timer-driven load); the prediction then rests on "
                   "the closed loop alone")
    p.add_argument("--json", action="store_true", help="print one JSON object")
