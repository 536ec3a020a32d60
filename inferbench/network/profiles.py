"""Network conditions between the load generator and the server: named link profiles.

A profile is what a client sees of its path to the server: the one-way delay each way, the
spread of that delay (jitter), and the application-level throughput each way. The figures
are application-level on purpose: the measurement reports they come from (speed tests
on phones) measure what an application gets, not the line rate, so the emulated link
shapes the bytes an application writes and no header overhead is added on top.

Each named profile states its source; a figure with no measured source at hand says
"assumed". Packet loss is not emulated: the link is a relay above TCP (network/link.py),
and a relay cannot drop a segment for TCP to retransmit, so a loss rate is refused rather
than imitated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LinkProfile:
    """One link's conditions, both directions (down: server to client)."""

    name: str
    delay_ms: float          # one-way delay, each direction (round trip: twice this)
    jitter_ms: float         # each chunk's delay is delay_ms +- jitter_ms, uniformly
    bandwidth_mbps: float    # downlink, application bytes
    uplink_mbps: float       # client to server, application bytes
    source: str = ""

    @property
    def rtt_ms(self) -> float:
        return 2 * self.delay_ms

    def transmit_ms(self, n_bytes: float, *, up: bool) -> float:
        """The time `n_bytes` take to cross an idle link one way: the delay plus their
        serialisation at the direction's bandwidth (the link's queueing excluded)."""
        mbps = self.uplink_mbps if up else self.bandwidth_mbps
        return self.delay_ms + n_bytes * 8 / (mbps * 1e3)

    def as_dict(self) -> dict:
        return asdict(self)


# Profiles, one source per figure. Opensignal reports latency as a round trip; the
# one-way delay is half of it.
PROFILES: dict[str, LinkProfile] = {p.name: p for p in (
    LinkProfile(
        "lan", delay_ms=0.1, jitter_ms=0.0, bandwidth_mbps=940.0, uplink_mbps=940.0,
        source="Gigabit Ethernet: 940 Mbit/s is the TCP goodput of a 1000BASE-T line "
               "(1500-byte frames); 0.2 ms round trip within one switched LAN (assumed)"),
    LinkProfile(
        "wifi", delay_ms=10.0, jitter_ms=5.0, bandwidth_mbps=50.0, uplink_mbps=50.0,
        source="round trip 20 ms: the median WiFi-hop latency on a university campus "
               "(Pei et al., 'WiFi can be the weakest link of round trip network latency in "
               "the wild', INFOCOM 2016); jitter +-5 ms and 50 Mbit/s each way assumed "
               "(a shared campus access point)"),
    LinkProfile(
        "4g", delay_ms=27.5, jitter_ms=0.0, bandwidth_mbps=21.3, uplink_mbps=6.3,
        source="Opensignal, State of Mobile: USA (May 2019, Q1 2019): 4G download "
               "21.3 Mbit/s, upload 6.3 Mbit/s, latency 44.1-66.4 ms round trip "
               "(55 ms, the middle of that range)"),
)}


def profile_of(network) -> LinkProfile | None:
    """The link a spec's `network` field asks for: a named profile, the spec's own figures
    (a NetworkSpec), or None for the host's loopback."""
    if network is None:
        return None
    if isinstance(network, str):
        return PROFILES[network]
    return LinkProfile("custom", delay_ms=network.delay_ms, jitter_ms=network.jitter_ms,
                       bandwidth_mbps=network.bandwidth_mbps,
                       uplink_mbps=network.uplink_mbps or network.bandwidth_mbps,
                       source="the spec's own figures")


def transmit_means_ms(profile: LinkProfile, arrays) -> dict[str, float | None]:
    """A point's mean transmit time each way over its ok requests: the link's delay plus
    each request's (response's) bytes at the direction's bandwidth. Time queued behind
    other requests for the link is not in it (it stays in the client-side rest)."""
    import numpy as np

    from analysis.summary import request_latencies_ms

    ok, _ = request_latencies_ms(arrays)
    if not ok.any():
        return {"transmit_up_ms": None, "transmit_down_ms": None}
    sent = np.asarray(arrays["bytes_sent"], dtype=float)[ok]
    received = np.asarray(arrays["bytes_received"], dtype=float)[ok]
    return {"transmit_up_ms": float(profile.transmit_ms(sent, up=True).mean()),
            "transmit_down_ms": float(profile.transmit_ms(received, up=False).mean())}


def network_label(network) -> str | None:
    """A stored spec's `network` in a few characters: the profile's name, or a link's own
    figures ("5ms 10/2Mbit/s": one-way delay, down / up); None for the loopback."""
    if network is None or isinstance(network, str):
        return network
    up = network.get("uplink_mbps") or network["bandwidth_mbps"]
    jitter = f"+-{network['jitter_ms']:g}" if network.get("jitter_ms") else ""
    return f"{network['delay_ms']:g}{jitter}ms {network['bandwidth_mbps']:g}/{up:g}Mbit/s"
