"""A seeded mix of stand-in benchmark jobs with heavy-tailed lengths.

Each job is a real BenchmarkSpec (1-2 platforms, 1-2 batch sizes, a Pareto-distributed
`min_duration_s`), so the predictor sees what it would see in production. Its true length
is the prediction times `time_scale` (minutes become seconds) times a lognormal error, so
the scheduler works with mispredicted lengths, as it would on real hardware.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from inferbench.scheduling.predictor import predict
from inferbench.spec import example_spec, parse_spec

PARETO_ALPHA = 1.1  # heavy tail: a few jobs are much longer than the rest
MIN_DURATION_S = (10.0, 60.0)  # Pareto scale and cap of a point's min_duration_s
PREDICTION_ERROR_SIGMA = 0.2  # lognormal sigma of true length / predicted length


@dataclass(frozen=True)
class Job:
    label: str
    spec: dict[str, Any]
    predicted_s: float  # what the scheduler will predict (no history), scaled
    sleep_s: float  # the job's true length

    def conf(self, time_scale: float) -> dict[str, Any]:
        return {"spec": self.spec, "sleep_s": self.sleep_s, "time_scale": time_scale,
                "label": self.label}


def job_mix(n: int, seed: int = 1, time_scale: float = 0.06) -> list[Job]:
    rng = random.Random(seed)
    base = example_spec().model_dump(mode="json")
    jobs = []
    for i in range(n):
        scale, cap = MIN_DURATION_S
        duration = min(cap, scale * rng.paretovariate(PARETO_ALPHA))
        platforms = rng.sample(["triton", "onnxruntime"], rng.choice([1, 2]))
        raw = {**base, "name": f"mix{seed}-{i:03d}", "platforms": platforms,
               "batch_sizes": rng.sample([1, 4, 8, 16], rng.choice([1, 2])),
               "min_duration_s": round(duration, 1), "max_duration_s": 120.0,
               "min_requests": 100}
        spec = parse_spec(raw, source=f"job {i}")
        predicted = predict(spec).total_s * time_scale
        error = rng.lognormvariate(0.0, PREDICTION_ERROR_SIGMA)
        jobs.append(Job(label=f"job{i:03d}", spec=spec.model_dump(mode="json"),
                        predicted_s=round(predicted, 3), sleep_s=round(predicted * error, 2)))
    return jobs


# Real benchmark jobs for the cluster: small seeded models, short points, and the ladders
# users run (one point, a list of loads, a capacity search), on the platforms the stage
# image serves. Lengths are heavy-tailed through each point's min_duration_s.
REAL_PLATFORMS = ("onnxruntime", "torchscript", "triton")
REAL_MIN_DURATION_S = (2.0, 20.0)  # Pareto scale and cap of a point's min_duration_s


def _real_model(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {"family": "fc", "depth": rng.choice([2, 3, 4]),
                "width": rng.choice([64, 128, 256]), "input_shape": [rng.choice([32, 128])],
                "seed": rng.randrange(1000)}
    return {"family": "cnn", "depth": rng.choice([1, 2]), "width": rng.choice([8, 16]),
            "input_shape": [3, 32, 32], "num_outputs": 10, "seed": rng.randrange(1000)}


def _real_workload(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """(workload, ladder): one closed-loop point, a list of Poisson loads, or a search."""
    kind = rng.choices(["point", "list", "search"], weights=[3, 2, 1])[0]
    if kind == "point":
        return {"arrival": "closed_loop", "concurrency": rng.choice([1, 2, 4])}, {}
    if kind == "list":
        return ({"arrival": "poisson", "rate_rps": rng.choice([[20, 40], [25, 50, 100]]),
                 "seed": rng.randrange(1000)}, {"settle_s": 0.5})
    return ({"arrival": "poisson", "rate_rps": 50.0, "seed": rng.randrange(1000)},
            {"mode": "search", "growth": 2.0, "precision_pct": 50.0, "max_rungs": 4,
             "max_family_s": 40.0, "settle_s": 0.5, "profile_s": 1.0})


def benchmark_mix(n: int, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """`n` (label, spec) pairs of real, short benchmark jobs (validated specs, as JSON)."""
    from inferbench.backends import descriptor
    from inferbench.spec import Platform

    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        platforms = rng.sample(REAL_PLATFORMS, rng.choice([1, 1, 2]))
        workload, ladder = _real_workload(rng)
        scale, cap = REAL_MIN_DURATION_S
        raw = {"name": f"real{seed}-{i:03d}", "model": _real_model(rng),
               "formats": sorted({descriptor(Platform(p)).model_format.value
                                  for p in platforms}),
               "platforms": platforms, "batch_sizes": rng.sample([1, 8], rng.choice([1, 2])),
               "workload": workload, "ladder": ladder, "warmup_s": 1.0,
               "min_duration_s": round(min(cap, scale * rng.paretovariate(PARETO_ALPHA)), 1),
               "min_requests": 50, "max_duration_s": 30.0, "request_timeout_s": 10.0,
               "slo": {"percentile": 99.0, "latency_ms": 50.0}}
        spec = parse_spec(raw, source=f"job {i}")
        jobs.append((f"job{i:03d}", spec.model_dump(mode="json")))
    return jobs
