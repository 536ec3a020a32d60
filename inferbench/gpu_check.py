"""The GPU path end to end on one host, in a few minutes: the TorchScript platform on
`gpu:<index>` behind the project's FastAPI server, one short closed-loop point with the
resource sampler's NVML readings, then what a benchmark would record and report.

    python -m inferbench.gpu_check [--device gpu:0] [--seconds 20] [--json]

Prints the device the server says it runs the model on, the GPU's utilisation and power
during the point, the energy per request from the sampled power, and the throughput and
latency. Exits 2, saying why, where the GPU cannot be used (no CUDA build of torch, no
driver, no NVML): a check that ran on the CPU would prove nothing (`--device cpu` runs the
same path on the CPU, to check the script itself on a GPU-less host; it exits 2 too).
Needs torch, fastapi, uvicorn and nvidia-ml-py; no database, Airflow or Docker.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.models.signature import single_input

BATCH = 8
INPUT_SHAPE = (3, 64, 64)


def _model_file(workdir: Path) -> Path:
    """A canonical CNN (seeded weights), traced to TorchScript as the convert stage does."""
    import torch

    from inferbench.models.generator import build_model, sample_input
    from inferbench.spec import ModelFamily, ModelSpec

    spec = ModelSpec(family=ModelFamily.CNN, depth=4, width=64, input_shape=list(INPUT_SHAPE))
    model = build_model(spec).eval()
    path = workdir / "model.pt"
    with torch.no_grad():
        torch.jit.trace(model, sample_input(spec, BATCH, seed=0)).save(str(path))
    return path


def _gpu_figures(samples: list[dict[str, Any]], index: int, started_ns: int,
                 ended_ns: int) -> dict[str, Any]:
    from analysis.cost import energy_from_nvml_counter_j, energy_from_power_j

    rows = [s for s in samples if s.get("source") == f"gpu{index}"
            and started_ns <= s["t_ns"] <= ended_ns]
    if len(rows) < 2:
        raise InferBenchError(f"NVML gave {len(rows)} readings of GPU {index} during the "
                              "point; fix: install nvidia-ml-py and check the driver")
    t = np.array([r["t_ns"] for r in rows], dtype=np.int64)
    power = np.array([r["gpu_power_w"] for r in rows], dtype=np.float64)
    counter = np.array([np.nan if r.get("gpu_energy_mj") is None else r["gpu_energy_mj"]
                        for r in rows], dtype=np.float64)
    counted = energy_from_nvml_counter_j(counter)  # what analyze uses where the GPU has it
    integrated = energy_from_power_j(t, power)
    return {"gpu_util_pct_mean": float(np.mean([r["gpu_util_pct"] for r in rows])),
            "gpu_mem_bytes_max": int(max(r["gpu_mem_bytes"] for r in rows)),
            "gpu_power_w_mean": float(power.mean()), "nvml_readings": len(rows),
            "energy_j_power_integral": integrated, "energy_j_counter": counted,
            "energy_method": "nvml_energy_counter" if counted is not None else "nvml_power",
            "energy_j": counted if counted is not None else integrated}


def check(device: str, seconds: float, concurrency: int = 4) -> dict[str, Any]:
    """Serve, load and measure on `device`; the figures a benchmark would record."""
    from inferbench.backends import get_backend
    from inferbench.backends.base import ServeContext
    from inferbench.backends.process import spawn, stop_group, wait_ready
    from inferbench.load.protocols import Target, get_protocol
    from inferbench.load.runner import StopRule, run_point
    from inferbench.metrics.sampler import ResourceSampler
    from inferbench.netutil import free_port
    from inferbench.platforms import gpu_index

    index = gpu_index(device)  # None: "cpu", the dry run of this check on a GPU-less host
    backend = get_backend("torchscript")
    with tempfile.TemporaryDirectory(prefix="inferbench-gpu-check-") as tmp:
        workdir = Path(tmp)
        ctx = ServeContext(model_name="gpucheck", model_path=_model_file(workdir),
                           inputs=single_input(INPUT_SHAPE), num_outputs=10, workdir=workdir,
                           http_port=free_port(), grpc_port=free_port(),
                           metrics_port=free_port(), max_batch_size=BATCH, device=device)
        plan = backend.launch_plan(ctx)
        log = workdir / "server.log"
        server = spawn(plan, log)
        url = f"http://127.0.0.1:{ctx.http_port}"
        try:
            wait_ready(url + backend.ready_path(ctx), server, 180.0, log)
            runs_on = backend.serving_device(ctx, url).device
            protocol = get_protocol(backend.protocol)
            target = Target(url, ctx.model_name, backend.input_name, backend.output_name)
            rng = np.random.default_rng(0)
            requests = [protocol.build(target, rng.standard_normal((BATCH, *INPUT_SHAPE),
                                                                   dtype=np.float32))
                        for _ in range(4)]
            with ResourceSampler(server.pid, period_s=0.2) as sampler:
                records = run_point(requests, concurrency=concurrency, seed=0, warmup_s=3.0,
                                    rule=StopRule(seconds, 50, seconds * 3),
                                    request_timeout_s=30.0)
        finally:
            stop_group(server.pid)
    arrays = records.arrays()
    ok = arrays["status"] == 200
    latency_ms = (arrays["done_ns"][ok] - arrays["scheduled_ns"][ok]) / 1e6
    duration_s = (records.ended_ns - records.started_ns) / 1e9
    gpu = ({"energy_j": None} if index is None else
           _gpu_figures(sampler.samples, index, records.started_ns, records.ended_ns))
    n_ok = int(ok.sum())
    return {
        "asked": device, "server_runs_on": runs_on, "platform": "torchscript",
        "batch_size": BATCH, "input_shape": list(INPUT_SHAPE), "concurrency": concurrency,
        "duration_s": duration_s, "n_ok": n_ok, "n_failed": int((~ok).sum()),
        "throughput_rps": n_ok / duration_s if duration_s > 0 else 0.0,
        "latency_ms": {"p50": float(np.percentile(latency_ms, 50)) if n_ok else None,
                       "p99": float(np.percentile(latency_ms, 99)) if n_ok else None},
        **gpu, "energy_j_per_request": gpu["energy_j"] / n_ok if n_ok and gpu["energy_j"]
        else None,
        "gpus": _gpu_names(),
    }


def _gpu_names() -> list[str]:
    from inferbench.metrics.provenance import collect_provenance

    return [g["name"] for g in collect_provenance().get("gpus") or []]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="gpu:0",
                        help="gpu:<index>; cpu runs the same path without a GPU (a dry run "
                        "of this check, proving nothing about the GPU: exit status 2)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="the measured point's minimum length")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        result = check(args.device, args.seconds)
    except InferBenchError as exc:
        print(f"gpu-check: the GPU path could not run here: {exc}", file=sys.stderr)
        return 2
    result["wall_s"] = time.monotonic() - started
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0 if result["server_runs_on"].startswith("gpu") else 2


if __name__ == "__main__":
    sys.exit(main())
