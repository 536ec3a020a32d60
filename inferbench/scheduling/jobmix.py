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
