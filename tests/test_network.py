"""Network conditions: the named profiles and their sources, the spec's checks, the emulated
link (a real relay process: it never delivers early, keeps bytes in order, shapes to the
bandwidth, charges the handshake), and a whole run through a link whose transmit times
reach PostgreSQL and the report's split."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import point_and_requests, run_stages_for

from inferbench.errors import InferBenchError
from inferbench.network.link import LinkProcess, host_port, link_wait_ms
from inferbench.network.profiles import (
    PROFILES,
    LinkProfile,
    network_label,
    profile_of,
    transmit_means_ms,
)
from inferbench.spec import parse_spec

QUICK = json.loads((Path(__file__).parents[1] / "examples" / "quick-onnxruntime.json")
                   .read_text())


def test_every_profile_states_its_source_and_a_round_trip_of_twice_its_delay():
    assert {"lan", "wifi", "4g"} <= set(PROFILES)
    for name, profile in PROFILES.items():
        assert profile.name == name and profile.source
        assert profile.rtt_ms == 2 * profile.delay_ms
    assert PROFILES["4g"].uplink_mbps < PROFILES["4g"].bandwidth_mbps  # asymmetric


def test_transmit_time_is_the_delay_plus_the_bytes_at_the_bandwidth():
    four_g = PROFILES["4g"]
    assert four_g.transmit_ms(6300, up=True) == pytest.approx(27.5 + 8.0)  # 6.3 Mbit/s
    assert four_g.transmit_ms(21300, up=False) == pytest.approx(27.5 + 8.0)
    arrays = {"status": np.array([200, 200, 503]), "done_ns": np.array([5, 6, 7]),
              "scheduled_ns": np.zeros(3, dtype=np.int64),
              "bytes_sent": np.array([6300, 12600, 10**9]),
              "bytes_received": np.array([0, 21300, 10**9])}
    # The failed request (503) is not counted.
    assert transmit_means_ms(four_g, arrays) == pytest.approx(
        {"transmit_up_ms": 27.5 + 12.0, "transmit_down_ms": 27.5 + 4.0})


@pytest.mark.parametrize("network, says", [
    ("lte", "network 'lte' is not a named profile; fix: use one of ['4g', 'lan', 'wifi']"),
    ({"delay_ms": 5, "bandwidth_mbps": 10, "loss_pct": 1},
     "network.loss_pct 1.0 cannot be emulated"),
    ({"delay_ms": 1, "jitter_ms": 2, "bandwidth_mbps": 10},
     "network.jitter_ms 2.0 is above delay_ms 1.0"),
    ({"delay_ms": 5}, "network.bandwidth_mbps: Field required"),
    ({"delay_ms": 5, "bandwidth_mbps": 10, "latency": 3}, "network.latency: Extra inputs"),
    (5, "network must be a profile name or an object"),
])
def test_a_bad_network_is_refused_naming_the_field_and_the_fix(network, says):
    with pytest.raises(InferBenchError, match="field `network`") as caught:
        parse_spec({**QUICK, "network": network})
    assert says in str(caught.value)


def test_a_named_or_described_link_becomes_a_profile_and_a_label():
    assert profile_of(parse_spec({**QUICK, "network": "wifi"}).network) is PROFILES["wifi"]
    own = parse_spec({**QUICK, "network": {"delay_ms": 5, "bandwidth_mbps": 10,
                                           "uplink_mbps": 2}})
    assert profile_of(own.network) == LinkProfile("custom", 5.0, 0.0, 10.0, 2.0,
                                                  "the spec's own figures")
    assert profile_of(parse_spec(QUICK).network) is None
    assert network_label(own.model_dump()["network"]) == "5ms 10/2Mbit/s"
    assert network_label("4g") == "4g" and network_label(None) is None


def test_link_wait_is_each_ways_wait_per_message_summed():
    before = {"up_messages": 10, "up_wait_s": 1.0, "down_messages": 10, "down_wait_s": 0.5}
    after = {"up_messages": 30, "up_wait_s": 3.0, "down_messages": 30, "down_wait_s": 0.9}
    assert link_wait_ms(before, after) == {"link_wait_ms": pytest.approx(100.0 + 20.0)}
    assert link_wait_ms(None, after) == {"link_wait_ms": None}
    assert link_wait_ms(after, after) == {"link_wait_ms": None}  # nothing crossed


def test_urls_are_routed_through_the_link_by_host_and_port():
    assert host_port("http://127.0.0.1:8000/v2/models/m/infer") == ("127.0.0.1", 8000)
    assert host_port("localhost:8001") == ("localhost", 8001)
    with pytest.raises(InferBenchError, match="names no host and port"):
        host_port("http://127.0.0.1/")


# --- the relay, a real process ---

class _Echo:
    """A TCP server answering each message with the same bytes, or with `n` bytes for a
    message "bulk <n>"."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.server.accept()
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(1 << 16):
            if data.startswith(b"bulk "):
                conn.sendall(b"x" * int(data.split()[1]))
            else:
                conn.sendall(data)
        conn.close()


def _exchange(sock: socket.socket, message: bytes, expect: int) -> tuple[bytes, float]:
    started = time.perf_counter()
    sock.sendall(message)
    got = b""
    while len(got) < expect:
        got += sock.recv(1 << 20)
    return got, time.perf_counter() - started


@pytest.fixture(scope="module")
def echo() -> _Echo:
    return _Echo()


def test_the_link_never_delivers_early_and_keeps_bytes_in_order(echo):
    profile = LinkProfile("t", delay_ms=15.0, jitter_ms=10.0, bandwidth_mbps=1000.0,
                          uplink_mbps=1000.0)
    with LinkProcess(profile, ("127.0.0.1", echo.port)) as link, \
            socket.create_connection(("127.0.0.1", link.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A new connection pays the handshake's round trip before its first bytes go.
        _, first = _exchange(sock, b"hello", 5)
        assert first >= 2 * profile.rtt_ms / 1e3 - 2 * profile.jitter_ms / 1e3
        for i in range(20):
            message = f"message {i:02d} ".encode() * 50
            got, took = _exchange(sock, message, len(message))
            assert got == message  # jitter moves chunks in time, never out of order
            assert took >= (profile.rtt_ms - 2 * profile.jitter_ms) / 1e3


def test_the_link_shapes_to_its_bandwidth_each_way(echo):
    profile = LinkProfile("t", delay_ms=1.0, jitter_ms=0.0, bandwidth_mbps=8.0,
                          uplink_mbps=2.0)
    with LinkProcess(profile, ("127.0.0.1", echo.port)) as link, \
            socket.create_connection(("127.0.0.1", link.port)) as sock:
        _exchange(sock, b"warm", 4)
        _, down = _exchange(sock, b"bulk 200000", 200_000)  # 1.6 Mbit at 8 Mbit/s
        assert down >= 0.2
        # 0.8 Mbit at 2 Mbit/s; the echo's answer flows back as the chunks arrive
        _, up = _exchange(sock, b"u" * 100_000, 100_000)
        assert up >= 0.4


def test_the_link_counts_what_messages_waited_for_it(echo):
    """Two requests sent at once share the uplink: the second waits for the first's bytes;
    each new connection waits one round trip (its handshake)."""
    profile = LinkProfile("t", delay_ms=5.0, jitter_ms=0.0, bandwidth_mbps=100.0,
                          uplink_mbps=2.0)
    with LinkProcess(profile, ("127.0.0.1", echo.port)) as link:
        socks = [socket.create_connection(("127.0.0.1", link.port)) for _ in range(2)]
        for sock in socks:
            _exchange(sock, b"warm", 4)
        message = b"m" * 50_000  # 0.2 s at 2 Mbit/s
        senders = [threading.Thread(target=_exchange, args=(sock, message, len(message)))
                   for sock in socks]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        for sock in socks:
            sock.close()  # a message is counted once the next one starts, or at the end
        deadline = time.monotonic() + 10
        while (counters := link.counters())["up_messages"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert counters["up_messages"] == 4
    # A handshake's wait runs from the accept, and the first bytes arrive some time after
    # it: it counts up to a round trip each.
    handshakes_s = 2 * profile.rtt_ms / 1e3
    assert 0.2 - 0.005 <= counters["up_wait_s"] <= handshakes_s + 0.2 + 0.1


def test_a_link_aimed_elsewhere_refuses_another_url(echo):
    with LinkProcess(PROFILES["lan"], ("127.0.0.1", echo.port)) as link:
        assert link.url_for(f"http://127.0.0.1:{echo.port}/x") == \
            f"http://127.0.0.1:{link.port}/x"
        with pytest.raises(InferBenchError, match="is not aimed at"):
            link.url_for("http://127.0.0.1:1/x")
        assert link.describe()["relay_own_rtt_ms"] >= 0


def test_a_link_says_where_the_relays_own_costs_make_it_rough():
    """The relay's own round trip (measured at its start) against the profile's, and a
    bandwidth near the relay's copy rate: the LAN is rough, a 4G link is not."""
    lan = LinkProcess(PROFILES["lan"], ("127.0.0.1", 1))
    lan.own_rtt_ms = 0.12  # what the relay measured of itself, as LinkProcess reads it
    note = lan.describe()["emulation_note"]
    assert "60% of the profile's 0.2 ms" in note and "940 Mbit/s" in note
    four_g = LinkProcess(PROFILES["4g"], ("127.0.0.1", 1))
    four_g.own_rtt_ms = 0.2
    assert four_g.describe()["emulation_note"] is None


# --- a whole run through a link: real PostgreSQL, a real server ---

@pytest.mark.integration
def test_a_run_through_a_link_stores_its_transmit_times_and_reports_the_split(
        inferbench_env, db_url):
    run_id = "net-onnxruntime"
    network = {"delay_ms": 10, "bandwidth_mbps": 20, "uplink_mbps": 5}
    spec = {**QUICK, "name": run_id, "network": network,
            "workload": {"arrival": "poisson", "rate_rps": 20, "seed": 3},
            "min_duration_s": 3, "min_requests": 60,
            # The test checks the link's split, not this shared VM: one stray late send in
            # 61 is 1.6 %, over the default 1 %.
            "max_late_send_pct": 25}
    summary = run_stages_for(run_id, spec, "onnxruntime")
    assert summary["verdict"] == "VALID", summary["reasons"]
    point, rows = point_and_requests(db_url, run_id, "scheduled_ns", "done_ns", "bytes_sent",
                                     "bytes_received", "status")
    link = profile_of(parse_spec(spec).network)
    sent = np.array([row.bytes_sent for row in rows], dtype=float)
    received = np.array([row.bytes_received for row in rows], dtype=float)
    assert point["transmit_up_ms"] == pytest.approx(link.transmit_ms(sent, up=True).mean())
    assert point["transmit_down_ms"] == pytest.approx(
        link.transmit_ms(received, up=False).mean())
    assert point["link_wait_ms"] >= 0  # 20 req/s of a few hundred bytes: next to none
    # No request came back sooner than the link's round trip and its bytes allow (less
    # the relay's own round trip, which the link takes off its delay lines: 0.1-0.3 ms).
    latency_ms = np.array([(row.done_ns - row.scheduled_ns) / 1e6 for row in rows])
    floor_ms = link.transmit_ms(sent, up=True) + link.transmit_ms(received, up=False)
    assert (latency_ms >= floor_ms - 1.0).all()
    report = Path(summary["report"]).read_text()
    assert "Where the time goes: link, queue, compute and the rest" in report
    assert "network=10ms 20/5Mbit/s" in report
