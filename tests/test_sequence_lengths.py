"""Variable-length sequences: lengths drawn from each distribution, payloads padded as the
spec says, the spec's checks, and whole runs whose requests carry their lengths into
PostgreSQL and the report's latency-by-length table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_stages_for
from sqlalchemy import select

from analysis.sequence_lengths import latency_by_length
from inferbench import perfdb
from inferbench.errors import InferBenchError
from inferbench.load.sequence_lengths import (
    buckets_of,
    default_buckets,
    draw_lengths,
    load_lengths,
    padded_length,
    variable_payloads,
)
from inferbench.models.signature import Fill, TensorSpec
from inferbench.perfdb import schema
from inferbench.spec import Padding, SequenceLengthSpec, parse_spec

BERT_LIKE = (TensorSpec("input_ids", "int64", (32,), Fill.TOKENS, 100),
             TensorSpec("attention_mask", "int64", (32,), Fill.MASK))


def lengths(**fields) -> SequenceLengthSpec:
    return SequenceLengthSpec(**fields)


def test_each_distribution_draws_lengths_within_its_bounds():
    rng = np.random.default_rng(0)
    fixed = draw_lengths(lengths(distribution="fixed", length=20), 32, 50, rng)
    assert set(fixed.tolist()) == {20}
    uniform = draw_lengths(lengths(distribution="uniform", min=4, max=12), 32, 5000, rng)
    assert uniform.min() == 4 and uniform.max() == 12
    assert abs(uniform.mean() - 8) < 0.2  # (4 + 12) / 2
    logn = draw_lengths(lengths(distribution="lognormal", median=10, sigma=1.0, max=32),
                        32, 5000, rng)
    assert logn.min() >= 1 and logn.max() == 32  # a heavy tail, cut at the max
    assert 9 <= np.median(logn) <= 11
    trace = draw_lengths(lengths(distribution="trace", trace_path="t.txt"), 32, 5, rng,
                         trace=np.array([3, 7]))
    assert trace.tolist() == [3, 7, 3, 7, 3]


def test_padding_max_buckets_and_none():
    assert default_buckets(128) == [16, 32, 64, 128]
    assert default_buckets(100) == [16, 32, 64, 100]
    buckets = [16, 32, 64]
    assert [padded_length(n, Padding.BUCKETS, 64, buckets) for n in (1, 16, 17, 64)] == [
        16, 16, 32, 64]
    assert padded_length(17, Padding.MAX, 64, buckets) == 64
    assert padded_length(17, Padding.NONE, 64, buckets) == 17
    assert buckets_of(lengths(distribution="fixed", length=3), 128) == [32, 64, 96, 128]


def test_a_padded_payload_masks_what_is_past_each_samples_length():
    spec = lengths(distribution="uniform", min=3, max=30, padding="buckets", buckets=[8, 16, 32])
    v = variable_payloads(BERT_LIKE, spec, 4, np.random.default_rng(1), n=20)
    for batch, longest, padded in zip(v.batches, v.lengths, v.padded, strict=True):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        assert ids.shape == mask.shape == (4, padded) and padded in (8, 16, 32)
        assert mask.sum(1).max() == longest <= padded
        assert (ids[mask == 0] == 0).all() and (ids[mask == 1] > 0).all()
    recorded = v.per_request(np.array([0, 5, 0]))
    assert recorded["seq_len"].tolist() == [v.lengths[0], v.lengths[5], v.lengths[0]]


def test_a_float_sequence_is_zero_past_its_length():
    inputs = (TensorSpec("input", "float32", (10, 3)),)
    v = variable_payloads(inputs, lengths(distribution="fixed", length=4, padding="max"), 2,
                          np.random.default_rng(2), n=3)
    x = v.batches[0]["input"]
    assert x.shape == (2, 10, 3) and not x[:, 4:].any() and x[:, :4].all()


def test_latency_by_length_buckets_the_successful_requests():
    arrays = {"status": np.array([200, 200, 200, 500, 200]),
              "scheduled_ns": np.zeros(5, np.int64),
              "done_ns": np.array([1, 2, 3, 4, 9], np.int64) * 1_000_000,
              "seq_len": np.array([5, 10, 20, 20, 40]),
              "padded_len": np.array([16, 16, 32, 32, 64])}
    rows = latency_by_length(arrays, [16, 32, 64])
    assert [(r["length_from"], r["length_to"], r["n_ok"], r["p50_ms"]) for r in rows] == [
        (1, 16, 2, 1.0), (17, 32, 1, 3.0), (33, 64, 1, 9.0)]
    assert all(r["p99_ms"] is None for r in rows)  # too few requests for a p99


def test_a_trace_of_lengths_is_read_and_checked(tmp_path):
    (tmp_path / "ok.txt").write_text("# lengths\n12\n30\n\n5\n")
    assert load_lengths("ok.txt", 32, [tmp_path]).tolist() == [12, 30, 5]
    (tmp_path / "long.txt").write_text("12\n300\n")
    with pytest.raises(InferBenchError, match="line 2: length 300 is outside 1..32"):
        load_lengths("long.txt", 32, [tmp_path])


SPEC = {"name": "seq", "model": {"architecture": "bert_base", "input_shape": [64]},
        "platforms": ["onnxruntime"], "workload": {"arrival": "poisson", "rate_rps": 5},
        "slo": {"percentile": 99, "latency_ms": 100}}


@pytest.mark.parametrize("model, lengths_, platforms, says", [
    ({"family": "cnn", "input_shape": [3, 8, 8]}, {"distribution": "fixed", "length": 4},
     ["onnxruntime"], "model 'cnn' has no sequence axis"),
    (SPEC["model"], {"distribution": "uniform", "min": 8, "max": 100}, ["onnxruntime"],
     "sequence_length.max 100 is longer than the model's sequence (64"),
    (SPEC["model"], {"distribution": "uniform", "min": 8, "max": 60, "padding": "none"},
     ["onnxruntime", "mlserver"], "platforms ['mlserver'] cannot take"),
    (SPEC["model"], {"distribution": "uniform", "min": 8}, ["onnxruntime"],
     "distribution 'uniform' needs max"),
    (SPEC["model"], {"distribution": "fixed", "length": 8, "buckets": [8]}, ["onnxruntime"],
     "buckets applies to padding \"buckets\" only"),
    (SPEC["model"], {"distribution": "fixed", "length": 8, "median": 3}, ["onnxruntime"],
     "sequence_length.median does not apply to distribution 'fixed'"),
])
def test_a_bad_sequence_length_names_the_field_and_the_fix(model, lengths_, platforms, says):
    spec = {**SPEC, "model": model, "platforms": platforms,
            "workload": {**SPEC["workload"], "sequence_length": lengths_}}
    with pytest.raises(InferBenchError, match="fix") as err:
        parse_spec(spec)
    assert says in str(err.value)


def test_padding_to_the_max_is_served_by_every_platform():
    spec = {**SPEC, "platforms": ["mlserver", "torchserve", "onnxruntime"],
            "formats": ["onnx", "torchscript"],
            "workload": {**SPEC["workload"], "sequence_length": {
                "distribution": "lognormal", "median": 20, "sigma": 0.5}}}
    parsed = parse_spec(spec)
    assert not parsed.sends_free_sequence


# --- whole runs: real PostgreSQL, real servers ---

def _run_attention(run_id: str, padding: str, platform: str) -> dict:
    spec = {"name": run_id,
            "model": {"family": "attention", "depth": 1, "width": 16, "input_shape": [32, 8]},
            "platforms": [platform], "batch_sizes": [2],
            "workload": {"arrival": "poisson", "rate_rps": 40, "seed": 5, "sequence_length": {
                "distribution": "uniform", "min": 2, "max": 32, "padding": padding}},
            "warmup_s": 0.5, "min_duration_s": 3, "min_requests": 120, "max_duration_s": 10,
            "slo": {"percentile": 99, "latency_ms": 500}, "max_late_send_pct": 25}
    return run_stages_for(run_id, spec, platform)


@pytest.mark.integration
@pytest.mark.parametrize("padding, platform", [
    ("none", "onnxruntime"), ("buckets", "torchscript"),
    pytest.param("max", "mlserver", marks=pytest.mark.slow),
    pytest.param("buckets", "openvino", marks=pytest.mark.slow),
    pytest.param("max", "torchserve", marks=pytest.mark.slow),
    pytest.param("none", "triton", marks=[pytest.mark.triton, pytest.mark.slow])])
def test_requests_carry_their_lengths_to_the_results_and_the_report(inferbench_env, db_url,
                                                                    padding, platform):
    run_id = f"seq-{padding}-{platform}"
    summary = _run_attention(run_id, padding, platform)
    assert summary["verdict"] == "VALID", summary["reasons"]
    with perfdb.engine(db_url).connect() as conn:
        rows = conn.execute(select(schema.requests.c.seq_len, schema.requests.c.padded_len,
                                   schema.requests.c.status)
                            .where(schema.requests.c.run_id == run_id)).all()
        analysis = conn.execute(select(schema.runs.c.analysis)
                                .where(schema.runs.c.run_id == run_id)).scalar_one()
    assert rows and all(r.status == 200 for r in rows)
    seq = np.array([r.seq_len for r in rows])
    padded = np.array([r.padded_len for r in rows])
    assert seq.min() >= 2 and seq.max() <= 32 and len(set(seq.tolist())) > 5
    expected = {"none": seq, "max": np.full_like(seq, 32),
                "buckets": np.array([padded_length(s, Padding.BUCKETS, 32, [16, 32])
                                     for s in seq])}[padding]
    np.testing.assert_array_equal(padded, expected)
    buckets = analysis["latency_by_length"]
    assert {b["padding"] for b in buckets} == {padding}
    assert sum(b["n_ok"] for b in buckets) == len(rows)
    assert "Latency by sequence length" in Path(summary["report"]).read_text()
