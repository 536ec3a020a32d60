"""Where a request's time goes: pre-processing, the client's send, the link each way, the
server's queue, its compute, the client's read of the answer, post-processing, and the rest.

- The server reports, per point, the mean queue and compute time of the requests it
  completed (backends/server_stats.py), and its pre- and post-processing time where it
  does them.
- A client's processing time is measured per payload (processing/client.py); it happens
  outside the measured latency, so the split's mean adds it.
- Through an emulated link (spec.network) each request's transmit time each way is the
  link's delay plus its bytes at the link's bandwidth, and the link counts the time requests
  waited for it (behind others for its bandwidth; a new connection's handshake).
  Without a link, where the server times it (the FastAPI server), transmit up is the
  server's wait for the request's body after its head.
- Where the server times each request's whole stay (Triton's success.ns from the request
  in its core; the FastAPI server from its head parsed to its answer written), what it
  spent outside its queue, model and processing is its handling: routing, decoding the
  request, encoding the answer.
- The client measured each request's latency from its scheduled send, its own delay until
  the request's bytes were written (a late send, a connection opened for it) and, without
  a link, its read of the answer from the first byte to the last (over a link that time
  is the answer's bytes at the link's bandwidth, in transmit down).

What none of them accounts for, mean latency - the known parts, is the rest: the kernel's
loopback and the wake-ups of client and server threads, and HTTP/gRPC handling a server
does not time (Triton's front end, MLServer's REST layer). Means add up; tail percentiles do
not, so the split is of the mean only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The parts in the order a request meets them; each is a point record's column.
PARTS = (("pre-processing", "preprocess_ms"), ("send", "client_send_ms"),
         ("link wait", "link_wait_ms"), ("transmit up", "transmit_up_ms"),
         ("server handling", "server_handling_ms"), ("queue", "server_queue_ms"),
         ("compute", "server_compute_ms"), ("transmit down", "transmit_down_ms"),
         ("receive", "client_receive_ms"), ("post-processing", "postprocess_ms"))


@dataclass(frozen=True)
class LatencySplit:
    mean_ms: float
    queue_ms: float | None
    compute_ms: float | None
    transmit_up_ms: float | None = None
    transmit_down_ms: float | None = None
    link_wait_ms: float | None = None
    preprocess_ms: float | None = None
    postprocess_ms: float | None = None
    handling_ms: float | None = None  # in the server, outside its queue, model, processing
    client_send_ms: float | None = None     # scheduled send to bytes written
    client_receive_ms: float | None = None  # the answer's first byte to its last

    def known_ms(self) -> dict[str, float | None]:
        """Each part by name (None: not measured for this point)."""
        return {name: getattr(self, _field(column)) for name, column in PARTS}

    @property
    def measured_ms(self) -> float:
        """The measured parts together."""
        return sum(v for v in self.known_ms().values() if v is not None)

    @property
    def measured_share(self) -> float:
        """The measured parts over the mean (above 1 where they add up past it)."""
        return self.measured_ms / self.mean_ms if self.mean_ms > 0 else 0.0

    @property
    def rest_ms(self) -> float:
        """What no part accounts for (never below zero: the server's clock and the
        client's can disagree by a few microseconds)."""
        return max(0.0, self.mean_ms - self.measured_ms)

    def shares_pct(self) -> dict[str, float | None]:
        """Every part and the rest as percentages of their sum."""
        parts = {**self.known_ms(), "rest": self.rest_ms}
        total = sum(v for v in parts.values() if v)
        return {k: (None if v is None else 100 * v / total if total > 0 else 0.0)
                for k, v in parts.items()}


def _field(column: str) -> str:
    """LatencySplit's field for a PARTS column."""
    return column.removeprefix("server_")


# Measured on the client alone: present on every point, so they do not make a split.
CLIENT_ONLY = ("client_send_ms", "client_receive_ms")


def latency_split(row: Mapping[str, Any]) -> LatencySplit | None:
    """The split of one point record, or None where neither the server, a link nor a
    pipeline reported anything of it. A client's pre- and post-processing happen outside
    the measured latency (from the scheduled send to the answer): the split's mean adds
    them, a server's are inside it."""
    mean = (row.get("latency_ms") or {}).get("mean")
    client = {part: row.get(f"client_{part}_ms") for part in ("preprocess", "postprocess")}
    values = {column: row.get(column) for _, column in PARTS}
    for part in ("preprocess", "postprocess"):
        values[f"{part}_ms"] = (client[part] if client[part] is not None
                                else row.get(f"server_{part}_ms"))
    if row.get("transmit_up_ms") is None:  # no link: the bytes' tail as the server waited
        values["transmit_up_ms"] = row.get("server_receive_ms")
    if row.get("transmit_down_ms") is not None:  # the answer's bytes at the link's rate
        values["client_receive_ms"] = None
    if mean is None or all(v is None for k, v in values.items() if k not in CLIENT_ONLY):
        return None
    return LatencySplit(
        float(mean) + sum(v for v in client.values() if v is not None),
        **{_field(column): None if values[column] is None else float(values[column])
           for _, column in PARTS})


SPLIT_HEADER = ["configuration", "server requests", "mean (ms)",
                *(f"{name} (ms)" for name, _ in PARTS), "rest (ms)", "shares (%)"]


def split_rows(records: Iterable[Mapping[str, Any]], label) -> list[list[Any]]:
    """Report rows (SPLIT_HEADER) for every point with a split: the configuration, its
    mean latency, each part ("-" where not measured), the rest, and the measured parts'
    shares in the order of the header."""
    rows = []
    for r in records:
        s = latency_split(r)
        if s is None:
            continue
        shares = " / ".join(f"{v:.0f}" for v in s.shares_pct().values() if v is not None)
        rows.append([label(r), r.get("server_requests"), round(s.mean_ms, 3),
                     *("-" if v is None else round(v, 3) for v in s.known_ms().values()),
                     round(s.rest_ms, 3), shares])
    return rows
