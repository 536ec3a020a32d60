"""Latency distributions and configuration labels on known inputs (exact numbers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.capacity import capacities, family_labeller
from analysis.latency import ecdf, gaussian_kde, silverman_bandwidth
from analysis.points import config_label, labeller, latency_at


def point(platform="onnxruntime", batch=1, rate=10.0, p99=5.0, verdict="VALID", tp=None,
          run="r1", **extra):
    return {"run_id": run, "platform": platform, "format": "onnx", "hardware": "cpu:2vcpu",
            "model_name": "m", "batch_size": batch, "target_rate_rps": rate,
            "concurrency": None, "throughput_rps": rate if tp is None else tp,
            "latency_ms": {"p50": p99 / 2, "p99": p99}, "verdict": verdict, **extra}


def test_ecdf_is_sorted_values_and_rank_over_n():
    x, y = ecdf(np.array([3.0, 1.0, np.nan, 2.0]))
    assert x.tolist() == [1.0, 2.0, 3.0]
    assert y.tolist() == [1 / 3, 2 / 3, 1.0]


def test_kde_of_one_point_is_the_normal_density():
    assert gaussian_kde(np.array([0.0]), np.array([0.0]), bandwidth=1.0)[0] == \
        pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-12)
    # Two points at 0 and 2, evaluated half-way: both kernels give exp(-1/2)/sqrt(2 pi).
    assert gaussian_kde(np.array([0.0, 2.0]), np.array([1.0]), bandwidth=1.0)[0] == \
        pytest.approx(math.exp(-0.5) / math.sqrt(2 * math.pi), rel=1e-12)


def test_kde_integrates_to_one_and_chunks_agree():
    values = np.random.default_rng(0).gamma(2.0, 2.0, 10_000)  # > one 4096 chunk
    grid = np.linspace(-20, 60, 8001)
    density = gaussian_kde(values, grid)
    assert float(np.sum(density) * (grid[1] - grid[0])) == pytest.approx(1.0, abs=1e-3)


def test_silverman_uses_the_smaller_of_sd_and_iqr():
    # sd = 1.5811, IQR/1.34 = 2/1.34 = 1.4925 -> 0.9 * 1.4925 * 5^-0.2
    assert silverman_bandwidth(np.array([1.0, 2, 3, 4, 5])) == \
        pytest.approx(0.9 * (2 / 1.34) * 5 ** -0.2, rel=1e-12)
    assert silverman_bandwidth(np.array([7.0])) == 0.0


def test_new_platforms_and_config_knobs_group_without_code_changes():
    rows = [point(platform="torchserve", config={"max_batch": 8}),
            point(platform="torchserve", config={"max_batch": 16})]
    labels = {config_label(r) for r in rows}
    assert labels == {"torchserve/onnx b1 max_batch=8", "torchserve/onnx b1 max_batch=16"}


def test_latency_at_other_percentiles_reads_the_hdr_histogram():
    from analysis.percentiles import hdr_encode

    lat_us = np.arange(1, 1001) * 1000  # 1..1000 ms
    row = {"latency_ms": {"p99": 990.0}, "hdr_histogram": hdr_encode(lat_us)}
    assert latency_at(row, 99) == 990.0
    assert latency_at(row, 97.5) == pytest.approx(975.0, rel=1e-3)  # 3 significant digits
    assert latency_at({"latency_ms": {}}, 97.5) is None


def test_families_of_different_models_stay_apart():
    rows = [point(rate=10, p99=5, model_name="d1"), point(rate=20, p99=5, model_name="d1"),
            point(rate=10, p99=5, model_name="d2"), point(rate=20, p99=90, model_name="d2")]
    families = capacities(rows, slo_percentile=99, slo_ms=50)
    label = family_labeller(families)
    assert {label(f): f.capacity_rps for f in families} == \
        {"d1 onnxruntime b1": 20, "d2 onnxruntime b1": 10}


def test_server_configurations_are_named_only_where_they_vary():
    rows = [point(server_config="db=off,inst=1"), point(server_config="db=on,inst=2")]
    assert config_label(rows[0]) == "onnxruntime/onnx b1 [db=off,inst=1]"
    assert {labeller(rows)(r) for r in rows} == {"onnxruntime/onnx b1 [db=off,inst=1]",
                                                 "onnxruntime/onnx b1 [db=on,inst=2]"}
    assert labeller(rows[:1])(rows[0], with_load=True) == "onnxruntime/onnx b1 @ 10 rps"


def test_a_dozen_lines_get_a_dozen_looks_and_sixty_still_differ():
    from analysis.plots import distinct_lines

    for n in (5, 12, 20, 60):
        looks = [tuple(sorted(style.items())) for style, _ in zip(distinct_lines(n), range(n),
                                                                  strict=False)]
        assert len(set(looks)) == n, n
