"""The transmit / queue / compute split of a point, on known inputs."""

from __future__ import annotations

import pytest

from analysis.server_split import SPLIT_HEADER, LatencySplit, latency_split, split_rows
from inferbench.backends.base import ServerStats
from inferbench.backends.server_stats import parse_model_stats, split_ms


def test_rest_is_mean_minus_every_measured_part():
    s = LatencySplit(mean_ms=10.0, queue_ms=2.5, compute_ms=5.0)
    assert s.rest_ms == 2.5
    assert s.shares_pct() == {"pre-processing": None, "send": None, "link wait": None,
                              "transmit up": None, "server handling": None, "queue": 25.0,
                              "compute": 50.0, "transmit down": None, "receive": None,
                              "post-processing": None, "rest": 25.0}
    # Clocks of server and client can disagree slightly: never a negative rest.
    assert LatencySplit(1.0, 0.6, 0.5).rest_ms == 0.0
    linked = LatencySplit(mean_ms=40.0, queue_ms=1.0, compute_ms=3.0, transmit_up_ms=20.0,
                          transmit_down_ms=12.0, link_wait_ms=2.0)
    assert linked.rest_ms == 2.0
    assert linked.shares_pct()["transmit up"] == 50.0


def test_points_without_server_statistics_or_link_are_left_out():
    rows = [{"label": "a", "latency_ms": {"mean": 4.0}, "server_requests": 100,
             "server_queue_ms": 1.0, "server_compute_ms": 2.0},
            {"label": "b", "latency_ms": {"mean": 4.0}},
            # A platform without counters, through a link: the link's parts alone.
            {"label": "c", "latency_ms": {"mean": 30.0}, "transmit_up_ms": 12.0,
             "transmit_down_ms": 11.0}]
    assert latency_split(rows[1]) is None
    assert split_rows(rows, lambda r: r["label"]) == [
        ["a", 100, 4.0, "-", "-", "-", "-", "-", 1.0, 2.0, "-", "-", "-", 1.0,
         "25 / 50 / 25"],
        ["c", None, 30.0, "-", "-", "-", 12.0, "-", "-", "-", 11.0, "-", "-", 7.0,
         "40 / 37 / 23"]]
    assert len(SPLIT_HEADER) == len(split_rows(rows, lambda r: r["label"])[0])


def test_client_timing_alone_makes_no_split():
    assert latency_split({"latency_ms": {"mean": 4.0}, "client_send_ms": 0.1,
                          "client_receive_ms": 0.05}) is None


def test_without_a_link_the_servers_body_wait_is_the_transmission_and_the_read_counts():
    s = latency_split({"latency_ms": {"mean": 5.0}, "server_queue_ms": 0.5,
                       "server_compute_ms": 3.0, "server_handling_ms": 0.4,
                       "server_receive_ms": 0.3, "client_send_ms": 0.2,
                       "client_receive_ms": 0.1})
    assert (s.transmit_up_ms, s.client_send_ms, s.client_receive_ms) == (0.3, 0.2, 0.1)
    assert s.measured_ms == pytest.approx(4.5)
    assert s.rest_ms == pytest.approx(0.5)


def test_over_a_link_its_figures_stand_and_the_answers_read_is_in_transmit_down():
    # The server's wait for the body and the client's read of the answer happen while
    # the link carries the bytes: counting them again would count that time twice.
    s = latency_split({"latency_ms": {"mean": 50.0}, "server_queue_ms": 0.5,
                       "server_compute_ms": 3.0, "server_receive_ms": 20.0,
                       "transmit_up_ms": 25.0, "transmit_down_ms": 20.0,
                       "client_send_ms": 0.2, "client_receive_ms": 9.0})
    assert (s.transmit_up_ms, s.client_receive_ms) == (25.0, None)
    assert s.measured_ms == pytest.approx(48.7)


def test_client_processing_adds_to_the_mean_and_server_processing_is_inside_it():
    client = latency_split({"latency_ms": {"mean": 10.0}, "server_queue_ms": 1.0,
                            "server_compute_ms": 6.0, "client_preprocess_ms": 4.0,
                            "client_postprocess_ms": 1.0})
    assert client.mean_ms == 15.0 and client.preprocess_ms == 4.0
    assert client.rest_ms == 3.0
    server = latency_split({"latency_ms": {"mean": 10.0}, "server_queue_ms": 1.0,
                            "server_compute_ms": 3.0, "server_preprocess_ms": 4.0,
                            "server_postprocess_ms": 1.0})
    assert server.mean_ms == 10.0 and server.postprocess_ms == 1.0
    assert server.rest_ms == 1.0


def test_triton_statistics_extension_is_parsed():
    payload = {"model_stats": [{"name": "m", "inference_count": 12, "execution_count": 3,
                                "inference_stats": {
                                    "success": {"count": 10, "ns": 90_000_000},
                                    "queue": {"count": 10, "ns": 20_000_000},
                                    "compute_input": {"count": 10, "ns": 1_000_000},
                                    "compute_infer": {"count": 10, "ns": 50_000_000},
                                    "compute_output": {"count": 10, "ns": 2_000_000}}}]}
    assert parse_model_stats(payload) == ServerStats(10, 20_000_000, 53_000_000,
                                                     total_ns=90_000_000)


def test_fastapi_server_counters_are_parsed():
    payload = {"model_stats": [{"name": "m", "request_count": 4, "queue_ns": 8,
                                "compute_ns": 12, "execution_count": 2}]}
    assert parse_model_stats(payload) == ServerStats(4, 8, 12)
    timed = {"model_stats": [{**payload["model_stats"][0], "success_ns": 30,
                              "receive_ns": 5}]}
    assert parse_model_stats(timed) == ServerStats(4, 8, 12, total_ns=30, receive_ns=5)
    with pytest.raises(ValueError):
        parse_model_stats({"model_stats": []})


def test_split_of_two_readings_is_the_per_request_mean_between_them():
    before, after = ServerStats(10, 1_000_000, 4_000_000), ServerStats(60, 26_000_000,
                                                                        104_000_000)
    assert split_ms(before, after) == {"server_requests": 50, "server_queue_ms": 0.5,
                                       "server_compute_ms": 2.0}
    empty = {"server_requests": None, "server_queue_ms": None, "server_compute_ms": None}
    # A server that times each request's whole stay: the rest of it is its handling.
    # The wait for the bodies' bytes is out of the stay, and reported apart.
    timed_before = ServerStats(10, 1_000_000, 4_000_000, total_ns=6_000_000,
                               preprocess_ns=0, receive_ns=1_000_000)
    timed_after = ServerStats(60, 26_000_000, 104_000_000, total_ns=231_000_000,
                              preprocess_ns=50_000_000, receive_ns=11_000_000)
    assert split_ms(timed_before, timed_after) == {
        "server_requests": 50, "server_queue_ms": 0.5, "server_compute_ms": 2.0,
        "server_preprocess_ms": 1.0, "server_handling_ms": 1.0, "server_receive_ms": 0.2}
    assert split_ms(None, after) == empty and split_ms(after, after) == empty
