"""Capacity under an SLO: which offered loads a configuration carries, and the highest one.

A *family* is one platform x server configuration x batch size of a run; its points (rungs)
differ only in offered load. A rung *holds* when its SLO percentile is within the SLO, it
achieved at least `MIN_ACHIEVED_RATIO` of the offered rate (open loop) and no request
failed. The load stage's capacity search and the analysis judge rungs with the same
function, so the search stops where the analysis later draws the line.

The capacity of a family is the highest offered load whose rung is VALID (its measurements
can be trusted, :mod:`analysis.verdict`) and holds; for a closed loop, the throughput that
rung achieved. Its *bracket* is the lowest offered load above it whose rung failed, and why;
a family whose top rung still holds has no bracket: its capacity is a lower bound (the
search cap was reached). Cost and energy are taken at the capacity, not at whatever load a
point happened to be offered. Every answer (the summary, the report's banner,
recommendations and leaderboard, the recommender) ranks families with :func:`rank`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.cost import cost_per_million_requests
from analysis.points import group_by, latency_at
from analysis.verdict import VALID

# A rung whose server completed less than this share of the offered rate is overloaded: its
# queue grows without bound however short the measured latency looks.
MIN_ACHIEVED_RATIO = 0.95


@dataclass(frozen=True)
class RungJudgement:
    """Whether one rung holds under the SLO, and the first reason it does not."""

    offered: float                 # req/s (open loop) or clients (closed loop)
    achieved_rps: float
    latency_at_slo_ms: float | None
    n_failed: int
    holds: bool
    reason: str | None             # None when it holds
    sent_rps: float | None = None  # the rate the schedule actually sent (see judge_rung)
    # Which rule it broke: "errors", "throughput" (the server fell behind) or "latency"
    # (the SLO percentile, or none known); None when it holds.
    failed_on: str | None = None

    @property
    def server_failed(self) -> bool:
        """Failed on the server's own account, whatever the generator did: requests failed,
        or it completed too little of what was really sent. Late sends only delay requests,
        so such a failure stands even where the measurement was not valid; a rung that met
        the rule, or failed it on latency (timed from the schedule), may owe it to them."""
        return self.failed_on in ("errors", "throughput")

    @property
    def achieved_ratio(self) -> float | None:
        base = self.sent_rps or self.offered
        return self.achieved_rps / base if base else None


def judge_rung(*, offered: float, achieved_rps: float, latency_at_slo_ms: float | None,
               n_failed: int, slo_percentile: float, slo_ms: float,
               open_loop: bool = True, sent_rps: float | None = None) -> RungJudgement:
    """Judge one rung: errors first, then whether the server kept up (open loop only: a
    closed loop offers only what it completes), then the SLO percentile.

    `sent_rps`, when known, is the rate the rung's schedule actually sent: its requests over
    the time from the start to the last scheduled send. A Poisson schedule's count over a
    fixed time is off its nominal rate by about 1/sqrt(n) (4.6 % at 480 requests, so a server
    that kept up would fail the 95 % rule on one rung in seven); the achieved rate is then
    taken against what was sent."""
    def verdict(reason: str | None, failed_on: str | None = None) -> RungJudgement:
        return RungJudgement(offered, achieved_rps, latency_at_slo_ms, n_failed,
                             reason is None, reason, sent_rps, failed_on)

    if n_failed:
        return verdict(f"{n_failed} failed requests", "errors")
    base = sent_rps or offered
    if open_loop and achieved_rps < MIN_ACHIEVED_RATIO * base:
        sent = f", {sent_rps:.1f} sent" if sent_rps else ""
        return verdict(f"achieved {achieved_rps:.1f} of {offered:g} req/s offered{sent} "
                       f"(< {MIN_ACHIEVED_RATIO:.0%})", "throughput")
    if latency_at_slo_ms is None:
        return verdict(f"p{slo_percentile:g} unknown (no successful requests)", "latency")
    if latency_at_slo_ms > slo_ms:
        return verdict(f"p{slo_percentile:g} {latency_at_slo_ms:.1f} ms > {slo_ms:g} ms",
                       "latency")
    return verdict(None)


# --- the capacity of a family, from its point records (see analysis.points) ---


@dataclass(frozen=True)
class MeasuredRung:
    """One point of a family, judged twice and apart: measurement validity (the point's
    verdict) and the SLO rule (:func:`judge_rung`). It holds when both pass."""

    point: int | None
    offered: float                 # req/s (open loop) or clients (closed loop)
    achieved_rps: float
    latency_ms: float | None       # at the SLO percentile
    verdict: str | None            # VALID | INVALID; None: never judged
    judgement: RungJudgement
    reason: str | None             # why it does not hold; None when it holds
    row: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def holds(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class Bracket:
    """The lowest offered load above the capacity whose rung failed, and why."""

    offered: float
    point: int | None
    verdict: str | None
    reason: str
    latency_ms: float | None
    achieved_rps: float
    server_failed: bool = False    # see RungJudgement.server_failed

    def to_dict(self) -> dict[str, Any]:
        return {"offered": self.offered, "point": self.point, "verdict": self.verdict,
                "reason": self.reason, "latency_ms": self.latency_ms,
                "achieved_rps": self.achieved_rps}


@dataclass(frozen=True)
class FamilyCapacity:
    """The capacity at SLO of one family, its bracket, and cost and energy at capacity."""

    run_id: str | None
    run_name: str | None
    model_name: str | None
    platform: str
    config_index: int
    server_config: str | None      # the configuration's label, e.g. "db=on,inst=1"
    batch_size: int
    hardware: str | None
    open_loop: bool
    slo_percentile: float
    slo_ms: float
    rungs: tuple[MeasuredRung, ...]        # by offered load
    capacity: MeasuredRung | None          # the rung the capacity is read from
    bracket: Bracket | None
    capacity_rps: float | None
    usd_per_hour: float | None
    cost_per_million_usd: float | None        # per million requests, at capacity
    cost_per_million_items_usd: float | None  # per million inferences, at capacity
    energy_j_per_request: float | None        # measured at the capacity rung
    energy_method: str | None

    @property
    def capacity_items_per_s(self) -> float | None:
        """Inferences per second at capacity: a batch-b request carries b of them."""
        return None if self.capacity_rps is None else self.capacity_rps * self.batch_size

    @property
    def search_cap_reached(self) -> bool:
        """The highest load tried still holds: the capacity is only a lower bound."""
        return self.capacity is not None and self.bracket is None

    @property
    def deciding_rung(self) -> MeasuredRung | None:
        """The rung the family's answer rests on: its capacity rung, or, when no rung holds,
        its lowest (the "no load meets the SLO" answer). Rungs above the bracket overload
        the server on purpose; their validity does not decide the run's."""
        return self.capacity if self.capacity is not None else (
            self.rungs[0] if self.rungs else None)

    def caveats(self) -> list[str]:
        """What limits the answer without invalidating it: an INVALID bracket rung leaves
        the capacity a lower bound, unless the server failed there on its own account."""
        b = self.bracket
        if b is not None and b.verdict not in (None, VALID) and not b.server_failed:
            return [f"{family_label(self)}: the capacity is a lower bound; the next load "
                    f"tried ({self.bracket.offered:g}) was not measured validly: "
                    f"{self.bracket.reason}"]
        return []

    @property
    def latency_ms(self) -> float | None:
        """Latency at the SLO percentile at capacity."""
        return None if self.capacity is None else self.capacity.latency_ms

    def load_text(self, offered: float) -> str:
        return offered_text(offered, self.open_loop)

    def statement(self) -> str:
        """This family's answer in words."""
        pct, slo = self.slo_percentile, self.slo_ms
        if self.capacity is None:
            if not self.rungs:
                return "no load level recorded"
            low = self.rungs[0]
            return (f"no load tried meets p{pct:g} <= {slo:g} ms; the lowest "
                    f"({self.load_text(low.offered)}) had {_lowest_latency(low, pct, slo)}")
        text = f"capacity {capacity_text(self)}"
        if self.bracket is None:
            return text
        return text + f"; {self.load_text(self.bracket.offered)} failed: {self.bracket.reason}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the names of the `capacities` table's columns."""
        cap = self.capacity
        return {
            "run_id": self.run_id, "platform": self.platform,
            "config_index": self.config_index, "server_config": self.server_config,
            "batch_size": self.batch_size, "open_loop": self.open_loop,
            "slo_percentile": self.slo_percentile, "slo_ms": self.slo_ms,
            "n_rungs": len(self.rungs),
            "capacity_point": None if cap is None else cap.point,
            "capacity_offered": None if cap is None else cap.offered,
            "capacity_rps": self.capacity_rps,
            "capacity_items_per_s": self.capacity_items_per_s,
            "latency_at_slo_ms": self.latency_ms,
            "search_cap_reached": self.search_cap_reached,
            "capacity_bracket": None if self.bracket is None else self.bracket.to_dict(),
            "usd_per_hour": self.usd_per_hour,
            "cost_per_million_usd": self.cost_per_million_usd,
            "cost_per_million_items_usd": self.cost_per_million_items_usd,
            "energy_j_per_request": self.energy_j_per_request,
            "energy_method": self.energy_method,
            "answer": self.statement(),
        }


def _offered(row: Mapping[str, Any]) -> tuple[float | None, bool]:
    """Offered load of a point and whether it is open loop (a target rate) or closed
    (a number of clients)."""
    if row.get("arrival") == "closed_loop" or (row.get("target_rate_rps") is None
                                               and row.get("concurrency") is not None):
        load = row.get("concurrency")
        return (None if load is None else float(load)), False
    load = row.get("target_rate_rps")
    return (None if load is None else float(load)), True


def judge_point_rung(row: Mapping[str, Any], *, slo_percentile: float,
                     slo_ms: float) -> MeasuredRung | None:
    """A point record judged as a rung; None when it has no offered load to order it by."""
    offered, open_loop = _offered(row)
    if offered is None:
        return None
    achieved = float(row.get("throughput_rps") or 0.0)
    latency = latency_at(row, slo_percentile)
    # The rate the schedule really sent (analyze stores it per point): the load stage's search
    # judged the rung against it, so the analysis does too.
    sent = row.get("sent_rps") if open_loop else None
    judgement = judge_rung(offered=offered, achieved_rps=achieved, latency_at_slo_ms=latency,
                           n_failed=int(row.get("n_failed") or 0),
                           slo_percentile=slo_percentile, slo_ms=slo_ms, open_loop=open_loop,
                           sent_rps=None if sent is None else float(sent))
    verdict = row.get("verdict")
    why: list[str] = []
    if verdict != VALID:  # untrustworthy numbers first: the SLO reading may be wrong too
        why.append(f"{verdict or 'not judged'}: "
                   + ("; ".join(row.get("reasons") or []) or "no reasons recorded"))
    if judgement.reason:
        why.append(judgement.reason)
    point = row.get("point")
    return MeasuredRung(None if point is None else int(point), offered, achieved, latency, verdict,
                judgement, "; ".join(why) or None, row)


def family_key(row: Mapping[str, Any]) -> tuple:
    """What makes a family: the run (one model, one ladder), the platform, the server
    configuration and the batch size."""
    return (row.get("run_id"), row.get("model_name"), row.get("platform"),
            int(row.get("config_index") or 0), int(row.get("batch_size") or 1))


def family_capacity(rows: Sequence[Mapping[str, Any]], *, slo_percentile: float,
                    slo_ms: float) -> FamilyCapacity:
    """The capacity of one family from its points (every rung of its ladder)."""
    if not rows:
        raise ValueError("a family needs at least one point")
    first = rows[0]
    judged = [r for r in (judge_point_rung(row, slo_percentile=slo_percentile, slo_ms=slo_ms)
                          for row in rows) if r is not None]
    # A load measured twice (the load stage repeats a rung whose first measurement was not
    # valid): the later point supersedes the earlier, which stays stored with its verdict.
    latest: dict[float, MeasuredRung] = {}
    for r in sorted(judged, key=lambda r: -1 if r.point is None else r.point):
        latest[r.offered] = r
    rungs = tuple(sorted(latest.values(), key=lambda r: r.offered))
    held = [r for r in rungs if r.holds]
    capacity = held[-1] if held else None
    bracket = None
    open_loop = _offered(first)[1]
    if capacity is not None:
        above = [r for r in rungs if r.offered > capacity.offered and not r.holds]
        if above:
            b = above[0]
            bracket = Bracket(b.offered, b.point, b.verdict, b.reason or "", b.latency_ms,
                              b.achieved_rps, b.judgement.server_failed)
    batch = int(first.get("batch_size") or 1)
    cap_rps = None
    price = energy = method = None
    if capacity is not None:
        # Open loop: the rate the configuration carried (it achieved >= 95 % of it). Closed
        # loop: what its clients achieved, since they offer only what completes.
        cap_rps = capacity.offered if open_loop else capacity.achieved_rps
        price = capacity.row.get("usd_per_hour")
        energy = capacity.row.get("energy_j_per_request")
        method = capacity.row.get("energy_method")
    else:
        price = next((r.get("usd_per_hour") for r in rows
                      if r.get("usd_per_hour") is not None), None)
    cost = None if cap_rps is None else cost_per_million_requests(price, cap_rps)
    return FamilyCapacity(
        run_id=first.get("run_id"), run_name=first.get("name"),
        model_name=first.get("model_name"), platform=str(first.get("platform")),
        config_index=int(first.get("config_index") or 0),
        server_config=first.get("server_config"), batch_size=batch,
        hardware=first.get("hardware"), open_loop=open_loop,
        slo_percentile=float(slo_percentile), slo_ms=float(slo_ms), rungs=rungs,
        capacity=capacity, bracket=bracket, capacity_rps=cap_rps, usd_per_hour=price,
        cost_per_million_usd=cost,
        cost_per_million_items_usd=None if cost is None else cost / batch,
        energy_j_per_request=energy, energy_method=method)


def capacities(rows: Iterable[Mapping[str, Any]], *, slo_percentile: float,
               slo_ms: float) -> list[FamilyCapacity]:
    """Every family of the rows (in the order first seen) with its capacity. A run measured
    before load ladders existed has one point per family: it is a one-rung ladder."""
    return [family_capacity(group, slo_percentile=slo_percentile, slo_ms=slo_ms)
            for group in group_by(rows, family_key).values()]


# --- the one ranking rule ---

BY_ITEMS = "capacity at SLO in items/s"
BY_COST = "cost per million inferences at capacity"
BY_ITEMS_UNPRICED = "capacity at SLO in items/s (no price known)"


@dataclass(frozen=True)
class Ranked:
    rank: int
    family: FamilyCapacity
    ranked_by: str


def prices_differ(usd_per_hour: Iterable[float | None]) -> bool:
    """Whether candidates run on hardware of different (known) prices: then cost decides."""
    return len({p for p in usd_per_hour if p is not None}) > 1


def rank_key(*, items_per_s: float, cost_per_million_items_usd: float | None,
             latency_ms: float | None, by_cost: bool, tiebreak: tuple = ()) -> tuple:
    """Sort key of the ranking rule (smaller first): the most inferences per second at the
    SLO, or where prices differ the cheapest per million inferences at capacity (priced
    families before unpriced ones, which go by items/s); ties go to the lower tail latency,
    then to ``tiebreak`` (for a deterministic order). Never the offered load's noise: an
    open-loop capacity is the offered rate of a rung that held, not what it measured."""
    tail = float("inf") if latency_ms is None else latency_ms
    if by_cost and cost_per_million_items_usd is not None:
        return (0, cost_per_million_items_usd, tail, *tiebreak)
    return (1 if by_cost else 0, -items_per_s, tail, *tiebreak)


def rank(families: Iterable[FamilyCapacity], *,
         budget_usd_per_hour: float | None = None) -> list[Ranked]:
    """The families that have a capacity at SLO (and fit the budget: a family with no known
    price cannot be shown to), best first, by :func:`rank_key`."""
    eligible = [f for f in families if f.capacity is not None
                and (budget_usd_per_hour is None
                     or (f.usd_per_hour is not None and f.usd_per_hour <= budget_usd_per_hour))]
    by_cost = prices_differ(f.usd_per_hour for f in eligible)

    def key(f: FamilyCapacity) -> tuple:
        return rank_key(items_per_s=f.capacity_items_per_s or 0.0,
                        cost_per_million_items_usd=f.cost_per_million_items_usd,
                        latency_ms=f.latency_ms, by_cost=by_cost,
                        tiebreak=(str(f.run_id), f.platform, f.config_index, f.batch_size))

    def ranked_by(f: FamilyCapacity) -> str:
        if not by_cost:
            return BY_ITEMS
        return BY_COST if f.cost_per_million_items_usd is not None else BY_ITEMS_UNPRICED

    return [Ranked(i, f, ranked_by(f)) for i, f in enumerate(sorted(eligible, key=key), 1)]


# --- words and numbers: one way of saying it everywhere ---

def rate_text(x: float) -> str:
    """1240.4 -> "1,240", 40.0 -> "40", 12.5 -> "12.5"."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def usd_text(x: float) -> str:
    """Two significant digits below a dollar ("$0.052"), cents above ("$12.40")."""
    return f"${x:,.2f}" if x >= 1 else f"${x:.2g}"


def offered_text(offered: float, open_loop: bool) -> str:
    if open_loop:
        return f"{rate_text(offered)} req/s"
    return f"{offered:g} client" + ("" if offered == 1 else "s")


def capacity_text(f: FamilyCapacity) -> str:
    """E.g. "1,240 req/s (9,920 items/s)", ">= 40 req/s (>= 320 items/s, search cap
    reached)", or for a closed loop "1,240 req/s at 16 clients (9,920 items/s)"."""
    if f.capacity_rps is None or f.capacity is None:
        return "none"
    at_least = ">= " if f.search_cap_reached else ""
    clients = "" if f.open_loop else f" at {f.load_text(f.capacity.offered)}"
    cap = ", search cap reached" if f.search_cap_reached else ""
    return (f"{at_least}{rate_text(f.capacity_rps)} req/s{clients} "
            f"({at_least}{rate_text(f.capacity_items_per_s or 0.0)} items/s{cap})")


def cost_text(f: FamilyCapacity) -> str:
    if f.cost_per_million_usd is None:
        return "no price known" if f.usd_per_hour is None else "no cost (no throughput)"
    text = f"{usd_text(f.cost_per_million_usd)} per million requests"
    if f.batch_size > 1 and f.cost_per_million_items_usd is not None:
        text += f" ({usd_text(f.cost_per_million_items_usd)} per million inferences)"
    return text


def _lowest_latency(rung: MeasuredRung, pct: float, slo_ms: float) -> str:
    """What the lowest rung measured, and its reason when latency is not what failed it."""
    if rung.latency_ms is None:
        return f"no p{pct:g} ({rung.reason})"
    text = f"p{pct:g} {rung.latency_ms:.1f} ms"
    return text if rung.latency_ms > slo_ms else f"{text} ({rung.reason})"


def family_label(f: FamilyCapacity, *, with_model: bool = False,
                 with_run: bool = False) -> str:
    """"onnxruntime b8 [db=on,inst=1]", prefixed by the model or the run where those vary."""
    label = f"{f.platform} b{f.batch_size}"
    if f.server_config:
        label += f" [{f.server_config}]"
    if with_model and f.model_name:
        label = f"{f.model_name} {label}"
    if with_run:
        label = f"{f.run_name or f.run_id} {label}"
    return label


def family_labeller(families: Sequence[FamilyCapacity]) -> Callable[[FamilyCapacity], str]:
    """A :func:`family_label` naming the model / the run only when the families hold
    several of them."""
    many_models = len({f.model_name for f in families}) > 1
    many_runs = len({f.run_id for f in families}) > 1
    return lambda f: family_label(f, with_model=many_models, with_run=many_runs)


def answer(families: Sequence[FamilyCapacity], *, slo_percentile: float, slo_ms: float,
           budget_usd_per_hour: float | None = None,
           label: Callable[[FamilyCapacity], str] | None = None) -> str:
    """The run's answer in one line: the best family at SLO, or why there is none."""
    label = label or family_labeller(families)
    slo = f"p{slo_percentile:g} <= {slo_ms:g} ms"
    ranked = rank(families, budget_usd_per_hour=budget_usd_per_hour)
    if ranked:
        best = ranked[0].family
        return f"Best within {slo}: {label(best)} - {capacity_text(best)}, {cost_text(best)}"
    budget = "" if budget_usd_per_hour is None else f" within ${budget_usd_per_hour:g}/h"
    dearer = sum(f.capacity is not None for f in families)
    if dearer:  # only the budget rules them out: say so, not how far off the SLO they are
        return (f"no configuration meets {slo}{budget}: {dearer} meet it at a higher or "
                "unknown price")
    tried = [f for f in families if f.rungs]
    if not tried:
        return f"no configuration meets {slo}: no load level was measured"
    # The family that came closest at its lowest load says how far off the SLO is.
    closest = min(tried, key=lambda f: (f.rungs[0].latency_ms is None,
                                        f.rungs[0].latency_ms or 0.0))
    low = closest.rungs[0]
    return (f"no configuration meets {slo}; the lowest load tried "
            f"({closest.load_text(low.offered)}) had "
            f"{_lowest_latency(low, slo_percentile, slo_ms)} ({label(closest)})")


def sent_rate_rps(scheduled_ns: np.ndarray, started_ns: int, ended_ns: int | None = None,
                  done_ns: np.ndarray | None = None) -> float | None:
    """The rate a rung's schedule actually sent: its n requests over the time the load was
    offered. A Poisson schedule's count over a fixed time is off its nominal rate by about
    1/sqrt(n) (4.6 % at 480 requests), which the 95 % rule must not mistake for a server
    that fell behind; so the achieved rate is compared with this instead.

    The offer ends where the stop rule ended the rung: at the arrival that was due next and
    not sent. That is the window's end (`ended_ns`) whenever every answer came before it;
    otherwise (the answers trailed the offer, which is what the 95 % rule looks for) and
    without `ended_ns` / `done_ns`, it is estimated as the last scheduled send plus one mean
    gap between sends."""
    n = len(scheduled_ns)
    if n < 2:
        return None
    last_ns = int(np.max(scheduled_ns))
    span_ns = last_ns - int(started_ns)
    if span_ns <= 0:
        return None
    offer_end_ns = last_ns + span_ns / n
    if ended_ns is not None and done_ns is not None:
        done = np.asarray(done_ns)
        done = done[done >= 0]
        if not done.size or int(done.max()) < ended_ns:
            offer_end_ns = ended_ns  # the window ended with the offer: known exactly
        else:
            offer_end_ns = min(offer_end_ns, ended_ns)
    return n / ((offer_end_ns - int(started_ns)) / 1e9)
