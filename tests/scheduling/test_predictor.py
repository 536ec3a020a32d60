"""The job-length predictor on known specs (exact numbers), and its history refinement
against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inferbench.scheduling.predictor import correction, point_s, predict, prior
from inferbench.spec import example_spec, parse_spec


def spec(**over):
    base = example_spec().model_dump(mode="json")
    base.update(over)
    return parse_spec(base)


def test_demo_spec_prior_exact():
    # point: warm-up 3 + max(12 s, 200 req / 40 rps = 5 s) = 15 s; 2 batch sizes x 2 platforms
    # = 60 s; start-up triton 8 + onnxruntime 3; generate 3 + onnx (6 + 0.5*2 blocks) +
    # torchscript (2 + 0.5*2); Airflow overhead 1.5 s x (3 + 4*2) tasks.
    p = prior(example_spec())
    assert p.point_s == 15.0
    assert (p.startup_s, p.prepare_s, p.overhead_s) == (11.0, 13.0, 16.5)
    assert p.prior_s == 60 + 11 + 13 + 16.5 == 100.5
    assert predict(example_spec()).total_s == 100.5


def test_min_requests_dominates_at_low_rate_and_max_duration_caps():
    slow = spec(workload={"arrival": "poisson", "rate_rps": 5, "seed": 1})
    assert point_s(slow) == 3 + 40.0  # 200 / 5 = 40 s, exactly the 40 s cap
    slower = spec(workload={"arrival": "poisson", "rate_rps": 2, "seed": 1})
    assert point_s(slower) == 3 + 40.0  # 100 s would exceed max_duration_s: capped
    closed = spec(workload={"arrival": "closed_loop", "concurrency": 4, "seed": 1})
    assert point_s(closed) == 3 + 12.0  # no rate known: min_duration_s


def test_one_platform_one_batch():
    s = spec(platforms=["onnxruntime"], batch_sizes=[1], formats=["onnx"])
    # 15 + start-up 3 + (3 + 6 + 1) + 1.5 x 7 tasks
    assert prior(s).prior_s == 15 + 3 + 10 + 10.5 == 38.5


def test_startup_comes_from_each_platforms_descriptor():
    # triton 8 + onnxruntime 3 + torchscript 4 + openvino 4 + torchserve 8 + mlserver 5
    # + tfserving 6 (the estimates beside each backend's descriptor).
    every = spec(platforms=["triton", "onnxruntime", "torchscript", "openvino", "torchserve",
                            "mlserver", "tfserving"],
                 formats=["onnx", "torchscript", "savedmodel"])
    assert prior(every).startup_s == 38.0


def with_ladder(ladder: dict, **workload) -> object:
    base = example_spec().model_dump(mode="json")
    base["workload"] = {**base["workload"], **workload}
    base["ladder"] = ladder
    return parse_spec(base)


def test_search_ladder_expects_a_profile_a_climb_and_a_bisection():
    # A search with Poisson arrivals is profiled first: levels 1..2 in flight (one instance),
    # each settled 0.5 s and measured profile_s 2 s, then the probes (4.5 s): 9.5 s.
    # Then 4 climbing rungs (40, 80, 160, 320 req/s) + 4 bisections (log2(ln 2 / ln 1.05) =
    # 3.8); the first rung warms up 3 s, the others settle 1 s; each measures max(12 s,
    # 200 req / its rate) = 12 s: 9.5 + 15 + 7 x 13 = 115.5 s per family, 2 batch sizes x 2
    # platforms.
    p = prior(with_ladder({"mode": "search"}))
    assert (p.rungs, p.family_s, p.point_s) == (8, 115.5, 15.0)
    assert p.prior_s == 115.5 * 4 + 11 + 13 + 16.5 == 502.5
    # Without the profile ...
    assert prior(with_ladder({"mode": "search", "predict": False})).family_s == 106
    # ... and with more instances to profile (a level each).
    assert prior(parse_spec({**with_ladder({"mode": "search"}).model_dump(mode="json"),
                             "server": {"instance_count": 3}})).family_s == 106 + 14.5
    # A server that batches is not modelled: its profile runs no open-loop probe.
    batching = parse_spec({**with_ladder({"mode": "search"}).model_dump(mode="json"),
                           "server": {"dynamic_batching": True}})
    assert prior(batching).family_s == 115.5 - 4.5
    # Bounded by max_rungs ...
    assert prior(with_ladder({"mode": "search", "max_rungs": 5})).family_s == 9.5 + 15 + 4 * 13
    # ... and by max_family_s: no rung starts unless the longest so far (15 s) still fits.
    capped = prior(with_ladder({"mode": "search", "max_family_s": 50}))
    assert (capped.rungs, capped.family_s) == (3, 9.5 + 15 + 13 + 13)
    # A coarser precision bisects less: log2(ln 2 / ln 1.25) = 1.6 -> 2 rungs.
    assert prior(with_ladder({"mode": "search", "precision_pct": 25})).rungs == 6


def test_list_ladder_runs_every_load_at_its_own_length():
    # 10 req/s needs 20 s for 200 requests; 20 and 40 req/s the 12 s minimum.
    p = prior(with_ladder({}, rate_rps=[10, 20, 40]))
    assert (p.rungs, p.family_s) == (3, (3 + 20) + (1 + 12) + (1 + 12))
    closed = prior(with_ladder({}, arrival="closed_loop", rate_rps=None,
                               concurrency=[1, 2, 4, 8]))
    assert (closed.rungs, closed.family_s) == (4, 15 + 3 * 13)


def test_server_configurations_multiply_measuring_and_start_up():
    # Two configurations: each measures both batch sizes on both platforms and starts both
    # servers again; each platform has configs, collect, stop + one measure per configuration.
    p = prior(spec(server={"instance_count": [1, 2]}))
    assert (p.configs, p.startup_s, p.overhead_s) == (2, 22.0, 1.5 * (3 + 5 * 2))
    assert p.prior_s == 15 * 2 * 2 * 2 + 22 + 13 + 19.5


def test_correction_is_clamped_median():
    assert correction([]) == (1.0, 0)
    assert correction([(100, 150), (100, 200), (100, 9000)]) == (2.0, 3)
    assert correction([(100, 1)]) == (0.25, 1)
    assert correction([(100, 1000), (100, 900)]) == (4.0, 2)


@pytest.mark.integration
def test_history_from_postgres_refines(db_url):
    from sqlalchemy import delete, insert

    from inferbench import perfdb
    from inferbench.perfdb import schema
    from inferbench.scheduling.history import similar_runs

    demo = example_spec()
    other = spec(name="other", platforms=["onnxruntime"], formats=["onnx"])
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    rows = [  # (run_id, spec, actual seconds, status)
        ("sched-hist-1", demo, 150.75, "complete"),
        ("sched-hist-2", demo, 201.0, "complete"),
        ("sched-hist-3", demo, 5000.0, "partial"),  # not complete: ignored
        ("sched-hist-4", other, 77.0, "complete"),  # other family/platforms: ignored
    ]
    engine = perfdb.engine(db_url)
    with engine.begin() as conn:
        conn.execute(delete(schema.runs).where(schema.runs.c.run_id.like("sched-hist-%")))
        for i, (run_id, s, actual, status) in enumerate(rows):
            created = t0 + timedelta(hours=i)
            conn.execute(insert(schema.runs).values(
                run_id=run_id, name=s.name, spec=s.model_dump(mode="json"),
                spec_hash=s.spec_hash(), status=status, created_at=created,
                finished_at=created + timedelta(seconds=actual)))
    try:
        with engine.connect() as conn:
            pairs = similar_runs(conn, demo)
            assert sorted(pairs) == [(100.5, 150.75), (100.5, 201.0)]
            refined = predict(demo, pairs)
            # median of 1.5 and 2.0
            assert (refined.correction, refined.history_runs) == (1.75, 2)
            assert refined.total_s == 100.5 * 1.75
            # same job under another name and sweep label: the same history
            relabelled = spec(name="nightly-x", sweep_id="nightly-2026-05-02")
            assert sorted(similar_runs(conn, relabelled)) == sorted(pairs)
            # same family + platforms, different hash: falls back to the similar runs
            wider = spec(batch_sizes=[1, 8, 16])
            assert sorted(similar_runs(conn, wider)) == [(100.5, 150.75), (100.5, 201.0)]
    finally:
        with engine.begin() as conn:
            conn.execute(delete(schema.runs).where(schema.runs.c.run_id.like("sched-hist-%")))


def test_an_unreadable_results_database_costs_only_the_history_correction(caplog):
    """Placement predicts from the spec alone when the results DB cannot be read, and says
    so, instead of refusing to create the run."""
    from operators.scheduling import predicted_seconds

    conf = example_spec().model_dump(mode="json")
    seconds = predicted_seconds(conf, "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert seconds == predict(example_spec()).total_s
    assert "run history unavailable" in caplog.text and "could not be read" in caplog.text
