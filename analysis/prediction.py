"""Latency under Poisson load predicted from light profiling (after Yan, He, Ruwase and
Smirni, SC 2016): a few seconds of closed-loop load per level instead of a load ladder.

Profiling (inferbench/load/profile.py) measures the endpoint with no random arrivals: k
requests always in flight, k = 1..c (c: the server's parallelism, e.g. its instances), and
once with c + 1, where the workers never idle, so its throughput is the server's capacity.
While a level above c still raises the throughput, profiling goes on up a level: part of
each request's time is spent outside the c workers (client, network, HTTP parsing) and
more requests in flight hide it, until the workers are busy all the time.
c is the parallelism the server was configured with (its instances), never one read from
the profile: c workers plus time outside them and more workers with less of it complete
the same closed-loop throughput at every level, so the profile cannot tell them apart.
From those levels (`Level`), `fit` derives the service model:

- D_c = c / X_sat: the service time of one request while all c workers are busy (X_sat:
  the highest throughput of the levels from c up, where the workers never idle). Capacity
  is c / D_c.
- O = L_c - D_c: the part of a lone request's latency spent outside the server's queue
  (client, network, HTTP parsing: it overlaps with other requests' service; L: the level's
  mean latency). It is added to every prediction, never queued.
- D_k = L_k - O for k < c: interference, when the service slows as more requests run at
  once (the state-dependent service rates mu_1..mu_c of the paper).
- Cs^2: the squared coefficient of variation of the service at level c.

`Prediction.at(rate)` then gives the mean and a percentile of the response time:
- the queue's waiting time is M/D/c's (analysis/queueing.py: exact, or Cosmetatos' closed
  form), blended toward M/M/c by Cs^2 when the service is not deterministic (the two-moment
  interpolation E[Wq] = (1 - Cs^2) E[Wq](M/D/c) + Cs^2 E[Wq](M/M/c), Cs^2 <= 1; above 1
  Allen-Cunneen's (1 + Cs^2) / 2 E[Wq](M/M/c), and the prediction says the tail is heavy);
- interference scales it by the birth-death chain with the state-dependent rates, against
  the same chain with every rate at D_c (1 when the D_k agree);
- the mean is O + the service the arrival meets (D_{n+1} when it finds n < c requests in
  the system, D_c otherwise, weighted by the chain's probabilities) + E[Wq];
- percentiles: the M/D/c waiting-time law (exact, on a grid), scaled to that E[Wq], plus a
  latency drawn from the profiled level the arrival joins (its measured spread), combined
  over a fixed set of draws so the curve moves smoothly with the rate.

A service that is not a queue of independent requests is not predicted: with dynamic
batching (declared, or detected when c + 1 in flight complete more than c workers can) the
prediction is marked unmodelled, with the reason, and has no curve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis.queueing import (
    cosmetatos_factor,
    mdc_mean_wait_ms,
    mdc_wait_grid,
    mmc_mean_wait_ms,
)

__all__ = ["APPROXIMATIONS", "CurvePoint", "Level", "Prediction", "ServiceModel", "fit",
           "predict", "still_scales"]

# Each level's latency law is kept as these percentiles (0, 0.25, ..., 100): enough for a
# p99.x of the sum and small enough to store with every family.
QUANTILE_PCTS = np.linspace(0.0, 100.0, 401)
APPROXIMATIONS = ("exact", "cosmetatos")
# Cs^2 below this is deterministic service for the model's name (the blend still uses it).
DETERMINISTIC_CS2 = 0.05
# c + 1 in flight finishing this much more than c workers can means requests are merged.
MERGE_FACTOR = 1.15
# A level whose throughput grew by at least this share of linear scaling over the level
# below did not saturate the workers yet: profiling goes on (see still_scales).
SCALING_SHARE = 0.9
# The service is said to slow with concurrency when D_1 is this much below D_c.
INTERFERENCE_SHARE = 0.10
_DRAWS = 200_000
_DRAW_SEED = 20161113  # fixed: the same draws at every rate, so the curve is smooth
_CAPACITY_MAX_RHO = 0.999  # the search's top: a queue at rho -> 1 has no finite tail
_CAPACITY_STEPS = 40   # bisection steps for the highest rate within an SLO (2^-40 of range)


@dataclass(frozen=True)
class Level:
    """One profiling level: `in_flight` requests always outstanding (closed loop)."""

    in_flight: int
    throughput_rps: float
    mean_ms: float
    std_ms: float
    n: int
    quantiles_ms: tuple[float, ...]   # at QUANTILE_PCTS

    @classmethod
    def from_latencies(cls, in_flight: int, latencies_ms: np.ndarray,
                       duration_s: float) -> Level:
        lat = np.asarray(latencies_ms, dtype=np.float64)
        if lat.size < 2 or duration_s <= 0:
            raise ValueError(f"level {in_flight}: {lat.size} answered requests in "
                             f"{duration_s:.2f} s are too few to profile")
        return cls(in_flight, lat.size / duration_s, float(lat.mean()), float(lat.std()),
                   int(lat.size), tuple(float(x) for x in np.percentile(lat, QUANTILE_PCTS)))

    def percentile_ms(self, pct: float) -> float:
        return float(np.interp(pct, QUANTILE_PCTS, self.quantiles_ms))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; `quantiles_ms` keeps the whole law (the report draws from it)."""
        out = asdict(self)
        out["quantiles_ms"] = [round(x, 4) for x in self.quantiles_ms]
        out.update(p50_ms=self.percentile_ms(50), p99_ms=self.percentile_ms(99))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Level:
        return cls(int(d["in_flight"]), float(d["throughput_rps"]), float(d["mean_ms"]),
                   float(d["std_ms"]), int(d["n"]), tuple(float(x) for x in d["quantiles_ms"]))


@dataclass(frozen=True)
class ServiceModel:
    """The queue derived from the profile (see the module's text for each quantity)."""

    parallelism: int                      # c
    service_ms: tuple[float, ...]         # D_1..D_c
    overhead_ms: float                    # O
    cs2: float
    approximation: str                    # "exact" or "cosmetatos" M/D/c waiting time
    unmodelled: str | None = None         # why no curve is given
    caveats: tuple[str, ...] = ()

    @property
    def capacity_rps(self) -> float:
        return 1000.0 * self.parallelism / self.service_ms[-1]

    @property
    def interference(self) -> bool:
        return self.service_ms[0] < (1.0 - INTERFERENCE_SHARE) * self.service_ms[-1]

    @property
    def name(self) -> str:
        """Which queue and which approximation, in words."""
        c = self.parallelism
        wait = "exact" if self.approximation == "exact" else "Cosmetatos"
        if self.cs2 <= DETERMINISTIC_CS2:
            base = f"M/D/{c} ({wait} waiting time)"
        elif self.cs2 <= 1.0:
            base = (f"M/G/{c}: M/D/{c} ({wait}) blended toward M/M/{c} by Cs^2 "
                    f"{self.cs2:.2f}")
        else:
            base = f"M/G/{c}: Allen-Cunneen, heavy-tailed service (Cs^2 {self.cs2:.2f})"
        if self.interference:
            base += ", state-dependent service (interference)"
        return base + f", {self.overhead_ms:.2f} ms outside the queue"

    def to_dict(self) -> dict[str, Any]:
        return {"name": None if self.unmodelled else self.name,
                "parallelism": self.parallelism,
                "service_ms": [round(x, 4) for x in self.service_ms],
                "overhead_ms": round(self.overhead_ms, 4), "cs2": round(self.cs2, 4),
                "capacity_rps": round(self.capacity_rps, 3),
                "approximation": self.approximation, "unmodelled": self.unmodelled,
                "caveats": list(self.caveats)}


@dataclass(frozen=True)
class CurvePoint:
    rate_rps: float
    rho: float
    mean_ms: float | None                 # None: at or beyond capacity (no steady state)
    p99_ms: float | None
    percentile_ms: float | None = None    # the SLO's percentile, when asked for
    percentile: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: (None if v is None else round(v, 4)) for k, v in asdict(self).items()}
        if self.percentile is None:
            out.pop("percentile_ms")
            out.pop("percentile")
        return out


def still_scales(levels: Mapping[int, Level], k: int) -> bool:
    """Whether k in flight completed nearly k / (k - 1) times what k - 1 did: the workers
    were not yet busy all the time, so a level above k may complete more."""
    return levels[k].throughput_rps >= SCALING_SHARE * levels[k - 1].throughput_rps * k / (k - 1)


def fit(levels: Iterable[Level], parallelism: int, *, approximation: str = "exact",
        dynamic_batching: bool = False) -> ServiceModel:
    """The service model of a profile: levels 1..c and c + 1 in flight (c = parallelism)."""
    if approximation not in APPROXIMATIONS:
        raise ValueError(f"approximation {approximation!r} is not one of {APPROXIMATIONS}")
    by_k = {lv.in_flight: lv for lv in levels}
    c = parallelism
    missing = [k for k in range(1, c + 2) if k not in by_k]
    if missing:
        raise ValueError(f"the profile lacks levels {missing}: a parallelism of {c} needs "
                         f"1..{c + 1} requests in flight")
    saturated = max(lv.throughput_rps for k, lv in by_k.items() if k >= c)
    d_c = 1000.0 * c / saturated
    caveats: list[str] = []
    overhead = by_k[c].mean_ms - d_c
    if overhead < 0:
        caveats.append(f"the latency at {c} in flight ({by_k[c].mean_ms:.3f} ms) is below "
                       f"the service time its capacity implies ({d_c:.3f} ms): no overhead "
                       "outside the queue assumed")
        overhead = 0.0
    service = tuple(max(by_k[k].mean_ms - overhead, 1e-6) for k in range(1, c))
    cs2 = (by_k[c].std_ms / d_c) ** 2
    unmodelled = None
    if dynamic_batching:
        unmodelled = ("dynamic batching merges queued requests into one execution: the "
                      "service time depends on the queue, which an M/D/c queue does not model")
    elif by_k[c + 1].throughput_rps > MERGE_FACTOR * by_k[c].throughput_rps * (c + 1) / c:
        unmodelled = (f"{c + 1} requests in flight completed {by_k[c + 1].throughput_rps:.1f}"
                      f" req/s, more than {c} workers at {by_k[c].throughput_rps:.1f} req/s "
                      "can: requests are merged (batched) or the parallelism is above "
                      f"{c}; fix: profile with a higher --max-concurrency, or treat the "
                      "server as batching")
    top = max(by_k)
    if still_scales(by_k, top):
        caveats.append(f"{top} in flight still raised the throughput: the server was not "
                       f"saturated, so its capacity ({c} / D) is a lower bound")
    if cs2 > 1.0:
        caveats.append(f"heavy-tailed service (Cs^2 {cs2:.2f} > 1): the tail is approximate")
    return ServiceModel(c, (*service, d_c), overhead, cs2, approximation, unmodelled,
                        tuple(caveats))


@dataclass
class Prediction:
    """Predicted latency at any Poisson rate, from a profile and its service model."""

    levels: tuple[Level, ...]
    model: ServiceModel
    _draws: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(_DRAW_SEED)
        self._draws = rng.random((2, _DRAWS))

    # -- the queue's pieces --------------------------------------------------------------
    def _chain(self, lam: float) -> tuple[np.ndarray, float]:
        """Birth-death probabilities of n = 0..c-1 in the system and of n >= c, with the
        state-dependent service rates, and the mean number waiting."""
        m = self.model
        c, d = m.parallelism, m.service_ms
        weights = [1.0]
        for n in range(1, c + 1):
            weights.append(weights[-1] * lam * d[n - 1] / n)  # lam / mu(n), mu(n) = n / D_n
        rho = lam * d[-1] / c
        tail = weights[c] / (1.0 - rho)           # sum over n >= c
        z = sum(weights[:c]) + tail
        waiting = weights[c] * rho / (1.0 - rho) ** 2
        return np.array([*weights[:c], tail]) / z, waiting / z

    def _wait_ms(self, lam: float) -> float:
        """E[Wq]: M/D/c (exact or Cosmetatos) blended by Cs^2, scaled for interference."""
        m = self.model
        c, d_c = m.parallelism, m.service_ms[-1]
        mm = mmc_mean_wait_ms(lam, d_c, c)
        if m.approximation == "exact":
            md = mdc_mean_wait_ms(lam, d_c, c)
        else:
            md = cosmetatos_factor(c, lam * d_c / c) * mm
        # Two-moment blend (exact for M/G/1); Allen-Cunneen beyond exponential spread.
        wait = (1.0 - m.cs2) * md + m.cs2 * mm if m.cs2 <= 1.0 else 0.5 * (1.0 + m.cs2) * mm
        if m.interference and mm > 0:
            _, waiting = self._chain(lam)
            wait *= (waiting / lam) / mm
        return wait

    def _joined_levels(self, lam: float) -> np.ndarray:
        """Probability that an arrival joins as the k-th request in service, k = 1..c
        (PASTA: it sees the chain's stationary law; n >= c joins at c)."""
        probs, _ = self._chain(lam)
        return probs  # index n (0..c-1) -> level n + 1; last entry (n >= c) -> level c

    # -- predictions ---------------------------------------------------------------------
    def mean_ms(self, rate_rps: float) -> float | None:
        """The predicted mean response time (None at or beyond capacity)."""
        m = self.model
        if m.unmodelled:
            raise ValueError(f"no prediction: {m.unmodelled}")
        lam = rate_rps / 1000.0
        if lam * m.service_ms[-1] / m.parallelism >= 1.0:
            return None
        joined = self._joined_levels(lam)
        service = float(np.dot(joined, [*m.service_ms, m.service_ms[-1]]))
        return m.overhead_ms + service + self._wait_ms(lam)

    def at(self, rate_rps: float, percentile: float | None = None) -> CurvePoint:
        m = self.model
        lam = rate_rps / 1000.0
        rho = lam * m.service_ms[-1] / m.parallelism
        mean = self.mean_ms(rate_rps)
        if mean is None:
            return CurvePoint(rate_rps, rho, None, None, None, percentile)
        wait = self._wait_ms(lam)
        joined = self._joined_levels(lam)
        samples = self._response_samples(lam, wait, joined)
        p99 = float(np.percentile(samples, 99.0))
        pct = None if percentile is None else float(np.percentile(samples, percentile))
        return CurvePoint(rate_rps, rho, mean, p99, pct, percentile)

    def _response_samples(self, lam: float, wait_ms: float, joined: np.ndarray) -> np.ndarray:
        m = self.model
        c, d_c = m.parallelism, m.service_ms[-1]
        u_wait, u_level = self._draws
        if wait_ms > 0 and lam > 0:
            h, law = mdc_wait_grid(lam, d_c, c)
            cdf = np.cumsum(law)
            cells = np.searchsorted(cdf, u_wait)
            below = np.where(cells > 0, cdf[np.maximum(cells - 1, 0)], 0.0)
            frac = (u_wait - below) / np.maximum(cdf[np.minimum(cells, cdf.size - 1)] - below,
                                                 1e-300)
            waits = np.where(cells == 0, 0.0, h * (cells - 1 + np.clip(frac, 0, 1)))
            exact_mean = float(np.dot(np.arange(law.size) * h, law))
            waits *= wait_ms / exact_mean if exact_mean > 0 else 0.0
        else:
            waits = np.zeros_like(u_wait)
        # Which level each draw joins (a stratified split of the draws), then its latency
        # from that level's measured law (which carries O and the service's spread).
        by_k = {lv.in_flight: lv for lv in self.levels}
        bounds = np.concatenate([[0.0], np.cumsum(joined)])
        latency = np.empty_like(u_level)
        for n in range(c + 1):
            level = by_k[min(n + 1, c)]
            mask = (u_level >= bounds[n]) & (u_level < bounds[n + 1])
            if not mask.any():
                continue
            # Rescale the draws inside this slice back to (0, 1) for the level's law.
            width = max(bounds[n + 1] - bounds[n], 1e-300)
            u = (u_level[mask] - bounds[n]) / width
            latency[mask] = np.interp(100.0 * u, QUANTILE_PCTS, level.quantiles_ms)
        latency[u_level >= bounds[-1]] = by_k[c].quantiles_ms[-1]
        return waits + latency

    def curve(self, rates_rps: Iterable[float], percentile: float | None = None
              ) -> list[CurvePoint]:
        return [self.at(r, percentile) for r in rates_rps]

    def capacity_rps(self, slo_ms: float, percentile: float = 99.0) -> float | None:
        """The highest Poisson rate whose predicted `percentile` latency is within
        `slo_ms`; None when even a trickle of load misses it."""
        def meets(rate: float) -> bool:
            if percentile >= 50.0:
                # The response is skewed right: a mean above the SLO puts any percentile
                # from the median up above it too, with no need for the waiting law.
                quick = self.mean_ms(rate)
                if quick is None or quick > slo_ms:
                    return False
            point = self.at(rate, percentile)
            return point.percentile_ms is not None and point.percentile_ms <= slo_ms

        top = self.model.capacity_rps
        low, high = top * 1e-3, top * _CAPACITY_MAX_RHO
        if not meets(low):
            return None
        if meets(high):
            return high
        for _ in range(_CAPACITY_STEPS):
            mid = math.sqrt(low * high)
            if meets(mid):
                low = mid
            else:
                high = mid
            if (high - low) / low < 1e-4:
                break
        return low


def predict(levels: Iterable[Level], parallelism: int, *, approximation: str = "exact",
            dynamic_batching: bool = False) -> Prediction:
    """The prediction of a profile of a server configured to run `parallelism` requests at
    once."""
    levels = tuple(sorted(levels, key=lambda lv: lv.in_flight))
    return Prediction(levels, fit(levels, parallelism, approximation=approximation,
                                  dynamic_batching=dynamic_batching))
