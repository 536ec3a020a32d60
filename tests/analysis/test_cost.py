"""Cost, energy and CO2 on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.cost import (
    Price,
    co2_g,
    cost_per_million_requests,
    energy_estimate_cpu_j,
    energy_from_counter_j,
    energy_from_power_j,
    hardware_name,
    load_grid_intensity,
    load_prices,
    match_price,
)
from inferbench.errors import InferBenchError


def test_cost_per_million_requests():
    # $3.60/h at 100 req/s: 360,000 requests per hour cost $3.60 -> $10 per million.
    assert cost_per_million_requests(3.6, 100.0) == pytest.approx(10.0, rel=1e-12)
    assert cost_per_million_requests(None, 100.0) is None
    assert cost_per_million_requests(3.6, 0.0) is None


def test_energy_from_power_samples_is_the_trapezoid():
    t_ns = np.array([2_000_000_000, 0, 1_000_000_000])  # unordered on purpose
    power_w = np.array([100.0, 100.0, 200.0])
    assert energy_from_power_j(t_ns, power_w) == 300.0
    assert energy_from_power_j(np.array([0]), np.array([5.0])) == 0.0


def test_rapl_counter_wraps_once():
    assert energy_from_counter_j(100, 2_100, 10_000) == pytest.approx(0.002)
    assert energy_from_counter_j(9_900, 100, 9_999) == pytest.approx(0.0002)


def test_cpu_estimate_and_co2():
    assert energy_estimate_cpu_j(50.0, 2.0, tdp_w_per_core=10.0) == 10.0
    assert co2_g(3.6e6, 480.0) == pytest.approx(480.0)


def test_price_matching():
    prices = load_prices()
    assert match_price("NVIDIA H100 80GB HBM3", prices).usd_per_hour == 11.06  # cheapest H100
    assert match_price(hardware_name([], 2), prices).instance == "e2-standard-2"
    assert match_price("cpu:3vcpu", prices) is None
    assert match_price("anything", prices, instance="g6.xlarge") == \
        Price("aws", "g6.xlarge", "L4", 0.805)
    with pytest.raises(InferBenchError, match="'nope' is not in the price table"):
        match_price("x", prices, instance="nope")
    assert hardware_name([{"name": "NVIDIA L4"}], 8, "gpu:0") == "NVIDIA L4"


def test_tables_parse_and_bad_rows_are_named(tmp_path):
    assert load_grid_intensity()["world"] == 480.0
    bad = tmp_path / "p.csv"
    bad.write_text("# comment\nprovider,instance,device,usd_per_hour\naws,x,cpu,cheap\n")
    with pytest.raises(InferBenchError, match="row 2 .*'cheap'"):
        load_prices(bad)
