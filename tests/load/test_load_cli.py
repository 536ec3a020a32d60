"""`inferbench load` against a real running server (the reference server)."""

from __future__ import annotations

import json

import pytest

from inferbench.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["load", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_summary_of_a_poisson_run(reference_server, capsys, tmp_path):
    server = reference_server(2.0, 1)
    # This shared host stalls now and then; the late-send limit is lifted here so that
    # the test checks the summary's content, and the next tests check the verdict rules.
    code, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference",
                           "--arrival", "poisson", "--rate", "100", "--duration", "2",
                           "--warmup", "0.5", "--stability-windows", "0", "--max-late-pct",
                           "100", "--records", str(tmp_path / "r.npz"), "--json")
    s = json.loads(out)
    assert code == 0 and s["verdict"] == "VALID", s["reasons"]
    assert s["n_ok"] >= 100 and s["n_failed"] == 0
    assert 60 < s["throughput_rps"] < 140
    lat = s["latency_ms"]
    assert 2.0 <= lat["p50"] <= lat["p99"] <= lat["max"] and lat["mean"] >= 2.0
    assert s["p99_ci_ms"][0] <= lat["p99"]
    assert 0 <= s["late_send_pct"] <= 100 and s["client_cpu_ms_per_request"] > 0
    assert s["settings"]["workload"] == {**s["settings"]["workload"], "arrival": "poisson",
                                         "rate_rps": 100.0}
    # the priority it really ran at: real-time where the host allows it (root here)
    import os

    assert s["settings"]["issuer_realtime"] == (1 if os.geteuid() == 0 else None)
    # The server saw every measured request (plus the probe and the warm-up).
    assert len(server.log()["seq"]) >= s["n_ok"] + 1
    from analysis.percentiles import hdr_decode

    assert hdr_decode(s["hdr_histogram_us"]).get_total_count() == s["n_ok"]
    import numpy as np

    records = np.load(tmp_path / "r.npz")
    assert set(records.files) >= {"scheduled_ns", "sent_ns", "first_byte_ns", "done_ns",
                                  "status", "bytes_sent", "bytes_received"}
    assert np.all(records["first_byte_ns"] <= records["done_ns"])


def test_unmet_stop_rule_is_invalid_with_the_reason(reference_server, capsys):
    server = reference_server(1.0, 1)
    code, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference",
                           "--rate", "50", "--duration", "0.5", "--max-duration", "1",
                           "--min-requests", "100000", "--warmup", "0", "--json")
    s = json.loads(out)
    assert code == 1 and s["verdict"] == "INVALID"
    assert any("cut short (stop_reason: max_duration)" in r for r in s["reasons"])
    assert any("ok requests < min_requests 100000" in r for r in s["reasons"])


def test_instability_is_invalid(reference_server, capsys):
    server = reference_server(2.0, 1, "--stall-at-s", "1.2", "--stall-ms", "500")
    code, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference",
                           "--rate", "200", "--duration", "1", "--max-duration", "3",
                           "--window", "1", "--warmup", "0", "--max-late-pct", "100", "--json")
    s = json.loads(out)
    assert code == 1 and s["verdict"] == "INVALID" and s["stable"] is False
    assert any(r.startswith("unstable: p99 of the last 3 windows") for r in s["reasons"])


def test_text_summary(reference_server, capsys):
    server = reference_server(1.0, 1)
    _, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference", "--arrival",
                        "constant", "--rate", "100", "--duration", "1", "--warmup", "0",
                        "--stability-windows", "0")
    assert "arrival constant" in out and "throughput" in out and "p99 95 % interval" in out


@pytest.mark.parametrize(("protocol", "path"), [
    ("kserve-v2-json", ""), ("tfserving-rest", ""), ("http-json", "/predict"),
    ("http-raw", "/predict")])
def test_every_http_protocol_client_against_a_real_server(reference_server, capsys, protocol,
                                                          path):
    server = reference_server(1.0, 1)
    extra = [] if protocol == "kserve-v2-json" else ["--input-shape", "4"]
    code, out, err = run_cli(capsys, "--endpoint", server.url + path, "--model", "reference",
                             "--protocol", protocol, *extra, "--batch-size", "3", "--rate",
                             "50", "--duration", "0.5", "--min-requests", "10", "--warmup", "0",
                             "--stability-windows", "0", "--max-late-pct", "100", "--json")
    s = json.loads(out)
    assert s["n_ok"] >= 10 and s["n_failed"] == 0, (s, err)


@pytest.mark.parametrize(("argv", "message"), [
    (["--arrival", "gamma", "--rate", "5"], "arrival 'gamma' needs --burstiness; fix: add"),
    (["--rate", "-3"], "--rate: -3.0 is out of range: each rate must be greater than 0"),
    (["--arrival", "pareto", "--rate", "5"], "--arrival: Input should be 'closed_loop'"),
    (["--rate", "5", "--protocol", "grpcx"], "unknown protocol 'grpcx'; known: kserve-v2"),
    (["--rate", "5", "--concurrency", "2"], "--concurrency 2 is only for --arrival 'closed_loop'"),
])
def test_bad_options_name_the_flag(capsys, argv, message):
    code, _, err = run_cli(capsys, "--endpoint", "http://127.0.0.1:9", "--model", "m", *argv)
    assert code == 1 and message in err, err


def test_a_bad_realtime_priority_names_the_flag_and_the_fix(capsys):
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "--endpoint", "http://127.0.0.1:9", "--model", "m", "--rate", "5",
                "--issuer-realtime", "200")
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "--issuer-realtime" in err and "'200'" in err
    assert "fix: give 0 (normal policy) or 1-99" in err


def test_unreachable_endpoint_says_so(capsys):
    code, _, err = run_cli(capsys, "--endpoint", "http://127.0.0.1:9", "--model", "m",
                           "--rate", "5")
    assert code == 1 and "--endpoint 'http://127.0.0.1:9'" in err and "fix" in err


def test_closed_loop_run(reference_server, capsys):
    server = reference_server(10.0, 2)
    code, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference",
                           "--arrival", "closed_loop", "--concurrency", "2", "--duration", "1",
                           "--min-requests", "50", "--warmup", "0", "--stability-windows", "0",
                           "--json")
    s = json.loads(out)
    assert s["open_loop"] is False and s["late_send_pct"] == 0.0
    # Two clients on two 10 ms workers: at most 200 req/s, and every latency >= 10 ms.
    assert s["n_ok"] >= 50 and s["throughput_rps"] <= 200 and s["latency_ms"]["p50"] >= 10
    assert code == 0 and s["verdict"] == "VALID", s["reasons"]


def test_the_load_generator_runs_on_the_cpus_given(reference_server, capsys, monkeypatch):
    import os

    from inferbench.load import standalone

    server = reference_server(1.0, 1)
    before = os.sched_getaffinity(0)
    cpu = max(before)
    seen = []
    real_run_point = standalone.run_point

    def spy(*args, **kwargs):
        seen.append(os.sched_getaffinity(0))
        return real_run_point(*args, **kwargs)

    monkeypatch.setattr(standalone, "run_point", spy)
    code, out, _ = run_cli(capsys, "--endpoint", server.url, "--model", "reference",
                           "--rate", "100", "--duration", "1", "--warmup", "0",
                           "--stability-windows", "0", "--max-late-pct", "100",
                           "--cpus", str(cpu), "--json")
    s = json.loads(out)
    assert code == 0 and seen == [{cpu}] and s["settings"]["load_cpus"] == str(cpu)
    assert os.sched_getaffinity(0) == before  # given back when the load ends
