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
- The idle-arrival law (level 0, optional): the latency of the requests of a light
  open-loop Poisson probe that arrived with nothing in flight. A closed loop never leaves
  the server idle; Poisson arrivals do, and one that finds the server idle pays for waking
  its threads (and the client's), which no closed-loop level measures. An arrival that
  finds the system empty (probability P_0 of the chain below, PASTA) takes this law instead
  of level 1's. The wake-up is treated as latency, not as work that delays the requests
  behind it: at light load few arrive during it, at heavy load P_0 is small.
- The open-loop factors (levels -1 and -2, optional): the mean latencies of loaded
  open-loop Poisson probes, the first at half the closed-loop capacity, the second near
  the capacity the first calibrates. Requests sent one by one on a timer cost the host
  more than a closed loop's (each wakes the client and the server on its own), and where
  client and server share CPUs the server then serves slower than the closed loop
  measured; how much slower depends on the load: the busier the server, the more requests
  find its threads (and the client's) already awake. So each probe gives a factor f at its
  rate, and the service at any rate is D_k times f interpolated linearly in the rate
  between the probes (held beyond them); the capacity is the lowest rate whose load
  rate x f(rate) x D_c / c reaches 1. Near capacity the mean is most sensitive to f (a
  wrong f there costs far more than the closed loop's precise D_c), which the second
  probe pins. Each f scales every D_k so that the model, replayed on the probe's own
  arrival times (analysis/sample_path.py: a few seconds of Poisson arrivals are themselves
  a lucky or unlucky sample), gives the probe's mean (a bisection; the mean grows with f),
  only where the measured latencies depart from the replayed ones by more than their own
  error (OPEN_LOOP_Z standard errors of the batch means of the differences) and by more
  than AGREE_SHARE; else f = 1 at that probe.

`Prediction.at(rate)` then gives the mean and a percentile of the response time:
- the queue's waiting time is M/D/c's (analysis/queueing.py: exact, or Cosmetatos' closed
  form), blended toward M/M/c by Cs^2 when the service is not deterministic (the two-moment
  interpolation E[Wq] = (1 - Cs^2) E[Wq](M/D/c) + Cs^2 E[Wq](M/M/c), Cs^2 <= 1; above 1
  Allen-Cunneen's (1 + Cs^2) / 2 E[Wq](M/M/c), and the prediction says the tail is heavy);
- interference scales it by the birth-death chain with the state-dependent rates, against
  the same chain with every rate at D_c (1 when the D_k agree);
- the mean is O + the service the arrival meets (D_{n+1} when it finds n < c requests in
  the system, D_c otherwise, weighted by the chain's probabilities) + E[Wq]; with an
  idle-arrival law, the n = 0 term is that law's mean instead of O + D_1;
- percentiles: the M/D/c waiting-time law (exact, on a grid), scaled to that E[Wq], plus a
  latency drawn from the profiled level the arrival joins (its measured spread; the
  idle-arrival law when it finds the system empty and there is one), combined
  over a fixed set of draws so the curve moves smoothly with the rate.

A service that is not a queue of independent requests is not predicted: with dynamic
batching (declared, or detected when c + 1 in flight complete more than c workers can) the
prediction is marked unmodelled, with the reason, and has no curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from analysis.queueing import (
    cosmetatos_factor,
    mdc_mean_wait_ms,
    mdc_wait_grid,
    mmc_mean_wait_ms,
)
from analysis.sample_path import replayed_latencies_ms

__all__ = ["APPROXIMATIONS", "IDLE_LEVEL", "NEAR_OPEN_LEVEL", "OPEN_LEVEL", "CurvePoint",
           "Level", "Prediction", "ServiceModel", "calibrate_open_loop", "fit", "predict",
           "still_scales"]

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
_BISECT_STEPS = 40     # at most this many halvings of a bisection's bracket (2^-40 of it)


# What a prediction beyond the loaded probes' rates rests on, for the texts that show one.
BEYOND_PROBES_NOTE = ("above {rate:.4g} req/s, the highest loaded probe's rate, the open-loop "
                      "factor is held from that probe, not measured; near capacity the queue "
                      "magnifies any error in it, so predictions there are the least certain")


def _bisect(holds: Callable[[float], bool], low: float, high: float, *,
            geometric: bool = False, tolerance: float = 0.0) -> tuple[float, float]:
    """The bracket [low, high] narrowed around where `holds` turns false (it holds at `low`,
    not at `high`): halved at its arithmetic (or, `geometric`, its geometric) middle up to
    _BISECT_STEPS times, or until its width is below `tolerance` (relative to `low` when
    geometric)."""
    for _ in range(_BISECT_STEPS):
        mid = math.sqrt(low * high) if geometric else 0.5 * (low + high)
        if holds(mid):
            low = mid
        else:
            high = mid
        width = (high - low) / low if geometric else high - low
        if width < tolerance:
            break
    return low, high

# The open-loop probes are kept as levels with these in-flight numbers (see the module's
# text): the idle-arrival law, and the loaded probes that calibrate the open-loop factor,
# at half the closed-loop capacity and near the capacity (every level below IDLE_LEVEL is
# a loaded probe).
IDLE_LEVEL = 0
OPEN_LEVEL = -1
NEAR_OPEN_LEVEL = -2
# The open-loop factor is searched within these bounds (a probe far outside them says the
# server is not the queue the closed loop measured: the bound is used, with a caveat).
_FACTOR_MIN, _FACTOR_MAX = 0.25, 8.0
# The closed-loop model stands unless the loaded probe's latencies are, on average, this
# many standard errors away from the model's replayed on its arrivals (two-sided, ~1 %).
OPEN_LOOP_Z = 2.58
# ...or by less than this share of their mean: the closed-loop fit's own structural error
# (O taken at c in flight, D_k = L_k - O) is up to 2 % on the reference server, whose
# service is truly the closed loop's.
AGREE_SHARE = 0.03
# The standard error of a probe's mean comes from this many consecutive batches' means
# (latencies of a queue are correlated: the spread of single requests would understate it).
SE_BATCHES = 10
# A calibrated utilisation this high at the loaded probe says the probe found the capacity.
_NEAR_CAPACITY_RHO = 0.95


@dataclass(frozen=True)
class Level:
    """One profiling level: `in_flight` requests always outstanding (closed loop); level
    IDLE_LEVEL holds the idle-arrival law of an open-loop probe (`throughput_rps`: the
    probe's rate; `n`: its arrivals that found nothing in flight), and the levels below it
    the loaded open-loop probes (`throughput_rps`: the probe's rate; every request)."""

    in_flight: int
    throughput_rps: float
    mean_ms: float
    std_ms: float
    n: int
    quantiles_ms: tuple[float, ...]   # at QUANTILE_PCTS
    mean_se_ms: float | None = None   # the mean's standard error (batch means), if known
    # Loaded probes only: each request's due time (ms from the first) and latency.
    arrivals_ms: tuple[float, ...] | None = None
    latencies_ms: tuple[float, ...] | None = None

    @classmethod
    def from_latencies(cls, in_flight: int, latencies_ms: np.ndarray,
                       duration_s: float) -> Level:
        """`latencies_ms` in the order the requests were due (for the batch means)."""
        lat = np.asarray(latencies_ms, dtype=np.float64)
        if lat.size < 2 or duration_s <= 0:
            raise ValueError(f"level {in_flight}: {lat.size} answered requests in "
                             f"{duration_s:.2f} s are too few to profile")
        se = batch_means_se(lat)
        return cls(in_flight, lat.size / duration_s, float(lat.mean()), float(lat.std()),
                   int(lat.size), tuple(float(x) for x in np.percentile(lat, QUANTILE_PCTS)),
                   se)

    def percentile_ms(self, pct: float) -> float:
        return float(np.interp(pct, QUANTILE_PCTS, self.quantiles_ms))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; `quantiles_ms` keeps the whole law (the report draws from it)."""
        out = asdict(self)
        for key in ("quantiles_ms", "arrivals_ms", "latencies_ms"):
            if out[key] is not None:
                out[key] = [round(x, 4) for x in out[key]]
        out.update(p50_ms=self.percentile_ms(50), p99_ms=self.percentile_ms(99))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Level:
        se = d.get("mean_se_ms")

        def floats(key: str) -> tuple[float, ...] | None:
            return None if d.get(key) is None else tuple(float(x) for x in d[key])

        return cls(int(d["in_flight"]), float(d["throughput_rps"]), float(d["mean_ms"]),
                   float(d["std_ms"]), int(d["n"]), floats("quantiles_ms"),
                   None if se is None else float(se), floats("arrivals_ms"),
                   floats("latencies_ms"))


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
    idle_ms: float | None = None          # mean latency of an arrival at an idle server
    # f at each loaded probe's rate: (rate req/s, service under open-loop load / closed
    # loop's), by rate. service_ms stays the closed loop's; at_rate scales it.
    open_loop_factors: tuple[tuple[float, float], ...] = ()

    def factor_at(self, rate_rps: float) -> float:
        """The open-loop factor at a Poisson rate: each probe's at its rate, linear in the
        rate between probes, held beyond them (1 without probes)."""
        if not self.open_loop_factors:
            return 1.0
        rates, factors = zip(*self.open_loop_factors, strict=True)
        return float(np.interp(rate_rps, rates, factors))

    def beyond_probes(self, rate_rps: float) -> bool:
        """Whether a Poisson rate lies above every loaded probe's (where the factor is held
        from the last one); False without probes (no factor at all)."""
        return bool(self.open_loop_factors) and bool(rate_rps > self.open_loop_factors[-1][0])

    def at_rate(self, rate_rps: float) -> ServiceModel:
        """The queue at a Poisson rate: the service scaled by the factor there."""
        f = self.factor_at(rate_rps)
        return replace(self, service_ms=tuple(f * d for d in self.service_ms),
                       open_loop_factors=())

    @property
    def closed_capacity_rps(self) -> float:
        return 1000.0 * self.parallelism / self.service_ms[-1]

    @property
    def capacity_rps(self) -> float:
        """The lowest Poisson rate whose load (rate x f(rate) x D_c / c) reaches 1."""
        closed = self.closed_capacity_rps
        if not self.open_loop_factors:
            return closed

        def load(rate: float) -> float:
            return rate * self.factor_at(rate) / closed

        low = 0.0
        for knot, _ in self.open_loop_factors:
            if load(knot) >= 1.0:
                high = knot
                break
            low = knot
        else:
            return closed / self.open_loop_factors[-1][1]  # f is held beyond the last probe
        low, high = _bisect(lambda rate: load(rate) < 1.0, low, high)
        return 0.5 * (low + high)

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
        base += f", {self.overhead_ms:.2f} ms outside the queue"
        if self.idle_ms is not None:
            base += f", {self.idle_ms:.2f} ms at an idle server (open-loop probe)"
        if self.open_loop_factors:
            scaled = " to ".join(f"x{f:.2f} at {rate:.4g} req/s"
                                 for rate, f in self.open_loop_factors)
            if all(f == 1.0 for _, f in self.open_loop_factors):
                scaled = "as the closed loop's at " + " and ".join(
                    f"{rate:.4g} req/s" for rate, _ in self.open_loop_factors)
            base += f", service {scaled} under open-loop load"
        return base

    def to_dict(self) -> dict[str, Any]:
        return {"name": None if self.unmodelled else self.name,
                "parallelism": self.parallelism,
                "service_ms": [round(x, 4) for x in self.service_ms],
                "overhead_ms": round(self.overhead_ms, 4), "cs2": round(self.cs2, 4),
                "capacity_rps": round(self.capacity_rps, 3),
                "approximation": self.approximation, "unmodelled": self.unmodelled,
                "caveats": list(self.caveats),
                "idle_ms": None if self.idle_ms is None else round(self.idle_ms, 4),
                "open_loop_factors": [{"rate_rps": round(rate, 3), "factor": round(f, 4)}
                                      for rate, f in self.open_loop_factors]}


@dataclass(frozen=True)
class CurvePoint:
    rate_rps: float
    rho: float
    mean_ms: float | None                 # None: at or beyond capacity (no steady state)
    p99_ms: float | None
    percentile_ms: float | None = None    # the SLO's percentile, when asked for
    percentile: float | None = None
    # Above the highest loaded probe's rate: the open-loop factor there is held from that
    # probe, not measured, and near capacity the queue magnifies any error in it.
    beyond_probes: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {k: (v if v is None or isinstance(v, bool) else round(v, 4))
               for k, v in asdict(self).items()}
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
    """The service model of a profile: levels 1..c and c + 1 in flight (c = parallelism),
    and the idle-arrival level where the profile has one."""
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
    idle = by_k.get(IDLE_LEVEL)
    return ServiceModel(c, (*service, d_c), overhead, cs2, approximation, unmodelled,
                        tuple(caveats), None if idle is None else idle.mean_ms)


@dataclass
class Prediction:
    """Predicted latency at any Poisson rate, from a profile and its service model."""

    levels: tuple[Level, ...]
    model: ServiceModel
    _draws_cache: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def _draws(self) -> np.ndarray:
        # Drawn on first use: a prediction asked only for means never needs them.
        if self._draws_cache is None:
            self._draws_cache = np.random.default_rng(_DRAW_SEED).random((2, _DRAWS))
        return self._draws_cache

    # -- the queue's pieces --------------------------------------------------------------
    def _chain(self, lam: float) -> tuple[np.ndarray, float]:
        """Birth-death probabilities of n = 0..c-1 in the system and of n >= c, with the
        state-dependent service rates, and the mean number waiting."""
        m = self.model.at_rate(1000.0 * lam)
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
        m = self.model.at_rate(1000.0 * lam)
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
        m = self.model.at_rate(rate_rps)
        if m.unmodelled:
            raise ValueError(f"no prediction: {m.unmodelled}")
        lam = rate_rps / 1000.0
        if lam * m.service_ms[-1] / m.parallelism >= 1.0:
            return None
        joined = self._joined_levels(lam)
        service = float(np.dot(joined, [*m.service_ms, m.service_ms[-1]]))
        mean = m.overhead_ms + service + self._wait_ms(lam)
        if m.idle_ms is not None:
            # An arrival at an empty system takes the idle-arrival law, not level 1's.
            mean += joined[0] * (m.idle_ms - (m.overhead_ms + m.service_ms[0]))
        return mean

    def at(self, rate_rps: float, percentile: float | None = None) -> CurvePoint:
        m = self.model.at_rate(rate_rps)
        lam = rate_rps / 1000.0
        rho = lam * m.service_ms[-1] / m.parallelism
        mean = self.mean_ms(rate_rps)
        beyond = self.model.beyond_probes(rate_rps)
        if mean is None:
            return CurvePoint(rate_rps, rho, None, None, None, percentile, beyond)
        wait = self._wait_ms(lam)
        joined = self._joined_levels(lam)
        samples = self._response_samples(lam, wait, joined)
        p99 = float(np.percentile(samples, 99.0))
        pct = None if percentile is None else float(np.percentile(samples, percentile))
        return CurvePoint(rate_rps, rho, mean, p99, pct, percentile, beyond)

    def _response_samples(self, lam: float, wait_ms: float, joined: np.ndarray) -> np.ndarray:
        m = self.model.at_rate(1000.0 * lam)
        f = self.model.factor_at(1000.0 * lam)
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
            level = by_k.get(IDLE_LEVEL, by_k[1]) if n == 0 else by_k[min(n + 1, c)]
            mask = (u_level >= bounds[n]) & (u_level < bounds[n + 1])
            if not mask.any():
                continue
            # Rescale the draws inside this slice back to (0, 1) for the level's law.
            width = max(bounds[n + 1] - bounds[n], 1e-300)
            u = (u_level[mask] - bounds[n]) / width
            law = np.interp(100.0 * u, QUANTILE_PCTS, level.quantiles_ms)
            if self.model.open_loop_factors and level.in_flight >= 1:
                # A closed-loop level's service part, at the open-loop factor.
                law = m.overhead_ms + f * np.maximum(law - m.overhead_ms, 0)
            latency[mask] = law
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
        low, _ = _bisect(meets, low, high, geometric=True, tolerance=1e-4)
        return low


def batch_means_se(values: np.ndarray) -> float | None:
    """The standard error of the mean of correlated values (in order), from SE_BATCHES
    consecutive batches; None when there are too few."""
    if values.size < 2 * SE_BATCHES:
        return None
    means = [b.mean() for b in np.array_split(values, SE_BATCHES)]
    return float(np.std(means, ddof=1) / math.sqrt(SE_BATCHES))


def _probe_factor(probe: Level, model: ServiceModel) -> tuple[float, list[str]]:
    """The open-loop factor f that makes the model, replayed on a loaded probe's arrivals,
    give the probe's mean (1 where the probe agrees with the closed loop within its own
    error), and what the probe says of the model beyond it."""
    measured = np.asarray(probe.latencies_ms)

    def replayed(f: float) -> np.ndarray:
        return replayed_latencies_ms(probe.arrivals_ms, [f * d for d in model.service_ms],
                                     model.overhead_ms, model.idle_ms)

    differences = measured - replayed(1.0)
    se = batch_means_se(differences)
    if se is not None and abs(differences.mean()) <= max(OPEN_LOOP_Z * se,
                                                         AGREE_SHARE * measured.mean()):
        return 1.0, []  # the probe agrees with the closed loop within its own error
    low, high = _FACTOR_MIN, _FACTOR_MAX
    caveats = []
    at = f"the loaded open-loop probe ({probe.mean_ms:.3f} ms at {probe.throughput_rps:.1f} req/s)"
    if replayed(low).mean() >= measured.mean():
        f = low
        caveats.append(f"{at} is faster than the model allows even with {low:g}x the closed "
                       "loop's service: the closed-loop profile does not describe this "
                       "server under open-loop load")
    else:
        low, high = _bisect(lambda f: replayed(f).mean() < measured.mean(), low, high,
                            tolerance=1e-4)
        f = 0.5 * (low + high)
    rho = probe.throughput_rps / 1000.0 * f * model.service_ms[-1] / model.parallelism
    if rho >= _NEAR_CAPACITY_RHO:
        caveats.append(f"{at} found the server near or beyond its capacity (rho {rho:.3f} "
                       "calibrated): the open-loop capacity is about the probe's rate, and "
                       "the curve below it is the model's")
    return f, caveats


def calibrate_open_loop(levels: tuple[Level, ...], model: ServiceModel) -> ServiceModel:
    """The model with the open-loop factor of each loaded probe at the probe's rate
    (unchanged without loaded probes): the service at any other rate is scaled by the
    factors interpolated between them (ServiceModel.factor_at)."""
    probes = [lv for lv in levels if lv.in_flight < IDLE_LEVEL and lv.arrivals_ms is not None]
    if not probes or model.unmodelled:
        return model
    factors: dict[float, float] = {}
    caveats = list(model.caveats)
    for probe in probes:
        f, said = _probe_factor(probe, model)
        factors[probe.throughput_rps] = f
        caveats.extend(said)
    return replace(model, open_loop_factors=tuple(sorted(factors.items())),
                   caveats=tuple(caveats))


def predict(levels: Iterable[Level], parallelism: int, *, approximation: str = "exact",
            dynamic_batching: bool = False) -> Prediction:
    """The prediction of a profile of a server configured to run `parallelism` requests at
    once."""
    levels = tuple(sorted(levels, key=lambda lv: lv.in_flight))
    model = fit(levels, parallelism, approximation=approximation,
                dynamic_batching=dynamic_batching)
    return Prediction(levels, calibrate_open_loop(levels, model))
