"""`inferbench predict` against a real running server (the reference M/D/c server), and
its refusals of bad options."""

from __future__ import annotations

import json
import re

import pytest

from analysis.queueing import mdc_mean_wait_ms
from inferbench.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("workers", [1, 2])
def test_profiles_the_reference_server_and_predicts_its_queue(reference_server, capsys,
                                                              workers):
    service_ms = 4.0
    server = reference_server(service_ms, workers)
    code, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference",
                           "--max-concurrency", str(workers), "--profile-s", "1.5",
                           "--warmup", "0.5", "--rates", f"{100 * workers},{175 * workers}",
                           "--slo-ms", "25", "--json")
    assert code == 0
    s = json.loads(out)
    # 1..c, then c + 1 and c + 2 for the capacity (more only while the throughput grows).
    in_flight = [lv["in_flight"] for lv in s["service_ms"]]
    assert in_flight == list(range(1, len(in_flight) + 1)) and len(in_flight) >= workers + 2
    # Then the open-loop probe: most of its arrivals found the (deterministic) server idle,
    # and took about a lone closed-loop request's time.
    idle = s["idle_arrivals"]
    assert idle["in_flight"] == 0 and idle["n"] >= 10
    assert idle["mean_ms"] == pytest.approx(s["service_ms"][0]["mean_ms"], rel=0.2)
    assert s["model"]["idle_ms"] == pytest.approx(idle["mean_ms"], abs=1e-3)
    # The loaded probes at half the capacity, then near it: the reference server serves as
    # the closed loop measured, so the factors stay near 1 (1 exactly where a probe agrees
    # within its error).
    half, near = s["loaded_probes"]
    assert half["in_flight"] == -1 and near["in_flight"] == -2
    assert "arrivals_ms" not in half and "arrivals_ms" not in near
    capacity = s["model"]["capacity_rps"]
    assert half["throughput_rps"] == pytest.approx(0.5 * capacity, rel=0.25)
    assert near["throughput_rps"] == pytest.approx(0.85 * capacity, rel=0.25)
    factors = s["model"]["open_loop_factors"]
    assert [f["rate_rps"] for f in factors] == pytest.approx(
        [half["throughput_rps"], near["throughput_rps"]], abs=1e-3)
    assert all(0.9 <= f["factor"] <= 1.1 for f in factors), factors
    model = s["model"]
    assert model["parallelism"] == workers and model["unmodelled"] is None
    assert re.match(rf"M/[DG]/{workers}\b", model["name"])
    # The server's own capacity is workers / service time; its saturated level measures it.
    assert model["capacity_rps"] == pytest.approx(1000 * workers / service_ms, rel=0.05)
    for point in s["curve"]:
        lam = point["rate_rps"] / 1000.0
        exact = service_ms + mdc_mean_wait_ms(lam, service_ms, workers)
        # Prediction = the exact queue + the client's and the network's share (a few
        # tenths of a ms on this host), with the capacity measured within a few percent.
        assert exact < point["mean_ms"] < exact * 1.25 + 0.5, point
        assert point["p99_ms"] > point["mean_ms"]
    cap = s["capacity"]
    assert cap["slo_ms"] == 25 and 0 < cap["rate_rps"] < model["capacity_rps"]


def test_text_output_names_the_model_and_the_capacity(reference_server, capsys):
    server = reference_server(3.0, 1)
    code, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference",
                           "--profile-s", "1", "--warmup", "0.3", "--slo-ms", "20")
    assert code == 0
    assert "profile: 2 in flight" in out
    # M/D/1, or M/G/1 when the host's jitter spread the profiled latencies
    assert re.search(r"model: M/[DG]/1", out) and "| rate (req/s) | rho |" in out
    assert "highest rate with p99 <= 20 ms:" in out
    assert "arrivals found the server idle" in out and "at an idle server" in out
    # rho 0.9 and 0.95 lie above the near-capacity probe (0.85): marked, and the mark said.
    assert re.search(r"^\| [\d.]+ \* \| 0\.95 \|", out, re.M)
    assert "* above " in out and "the highest loaded probe's rate" in out


def test_the_open_loop_probes_can_be_skipped(reference_server, capsys):
    server = reference_server(3.0, 1)
    code, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference",
                           "--profile-s", "1", "--warmup", "0.3", "--no-open-loop-probes", "--json")
    assert code == 0
    s = json.loads(out)
    assert s["idle_arrivals"] is None and s["loaded_probes"] == []
    assert s["model"]["idle_ms"] is None and s["model"]["open_loop_factors"] == []
    assert s["settings"]["open_loop_probes"] is False


def test_declared_dynamic_batching_is_not_predicted(reference_server, capsys):
    server = reference_server(2.0, 1)
    code, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference",
                           "--profile-s", "0.5", "--warmup", "0", "--dynamic-batching",
                           "--json")
    s = json.loads(out)
    assert code == 0 and s["curve"] == [] and "dynamic batching" in s["model"]["unmodelled"]
    # Not modelled, so not probed under open-loop load either: closed-loop levels only.
    assert s["loaded_probes"] == [] and s["idle_arrivals"] is None


@pytest.mark.parametrize("flag,value,message", [
    ("--max-concurrency", "0", "--max-concurrency 0 must be >= 1"),
    ("--rates", "10,x", "--rates '10,x' is not a comma list"),
    ("--rates", "10,-5", "every rate must be > 0"),
    ("--approximation", "erlang", "--approximation 'erlang' is not one of exact, cosmetatos"),
    ("--profile-s", "0", "--profile-s 0.0 must be > 0"),
    ("--cpus", "4000", "--cpus '4000' names CPU 4000, which this worker cannot use"),
    ("--cpus", "0-", "--cpus: '0-' is not a CPU list; fix:"),
])
def test_bad_options_are_refused_before_any_request(capsys, flag, value, message):
    # Nothing listens there: a refusal must come from the option check, not the network.
    code = main(["predict", "--endpoint", "http://127.0.0.1:9", "--model", "m",
                 "--input-shape", "4", flag, value])
    err = capsys.readouterr().err
    assert code == 1 and message in err
