"""The FastAPI server's dynamic batcher, as a pure unit: a recording inference function
stands in for the model (this tests the batcher's logic, not a serving platform). Every test
asserts exact batch compositions and that each caller gets exactly its own rows."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from inferbench.servers.batcher import DynamicBatcher


class Recorder:
    """output = input * 10 + 1 per row, so a wrong split shows; records every batch's rows."""

    def __init__(self, fail_on_rows: int | None = None, barrier: threading.Barrier | None = None):
        self.batches: list[list[float]] = []
        self.fail_on_rows, self.barrier = fail_on_rows, barrier

    def __call__(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = inputs["x"]
        self.batches.append(x[:, 0].tolist())
        if self.barrier is not None:
            self.barrier.wait(timeout=5)  # only passes if the other instance runs meanwhile
        if self.fail_on_rows is not None and len(x) == self.fail_on_rows:
            raise RuntimeError(f"model failed on a batch of {len(x)}")
        return [x * 10 + 1, x[:, :1].sum(axis=1)]


def request(value: float, rows: int = 1) -> dict[str, np.ndarray]:
    """`rows` samples of 2 features; row i holds value + i / 10."""
    column = value + np.arange(rows, dtype=np.float32)[:, None] / 10
    return {"x": np.hstack([column, column]).astype(np.float32)}


def run(coro_factory, batcher: DynamicBatcher):
    async def main():
        batcher.start()
        try:
            return await coro_factory()
        finally:
            await batcher.stop()

    return asyncio.run(main())


def check_own_rows(inputs: list[dict], results: list[list[np.ndarray]]) -> None:
    for sent, (scaled, summed) in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(scaled, sent["x"] * 10 + 1)
        np.testing.assert_array_equal(summed, sent["x"][:, 0])


def test_concurrent_requests_fill_a_batch_then_the_rest_waits_for_the_delay():
    model = Recorder()
    batcher = DynamicBatcher([model], dynamic_batching=True, max_batch_size=4,
                             max_delay_us=50_000)
    inputs = [request(v) for v in range(5)]
    started = time.monotonic()
    results = run(lambda: asyncio.gather(*(batcher.submit(i) for i in inputs)), batcher)
    elapsed_s = time.monotonic() - started
    assert model.batches == [[0, 1, 2, 3], [4]]  # full at 4: sent at once; 4 waits alone
    assert elapsed_s >= 0.05  # the lone request was held for the whole delay first
    check_own_rows(inputs, results)


def test_requests_arriving_within_the_delay_join_one_batch():
    model = Recorder()
    batcher = DynamicBatcher([model], dynamic_batching=True, max_batch_size=8,
                             max_delay_us=300_000)

    async def staggered():
        async def late(value: float, after_s: float):
            await asyncio.sleep(after_s)
            return await batcher.submit(request(value))

        return await asyncio.gather(late(0, 0), late(1, 0.02), late(2, 0.04))

    run(staggered, batcher)
    assert model.batches == [[0, 1, 2]]


def test_multi_row_requests_never_exceed_the_max_and_keep_fifo_order():
    model = Recorder()
    batcher = DynamicBatcher([model], dynamic_batching=True, max_batch_size=4,
                             max_delay_us=20_000)
    inputs = [request(0, rows=3), request(1, rows=2), request(2, rows=2), request(3, rows=1)]
    results = run(lambda: asyncio.gather(*(batcher.submit(i) for i in inputs)), batcher)
    # 3 + 2 > 4: the second request starts the next batch; 2 + 2 fills it; 1 goes alone.
    assert [len(b) for b in model.batches] == [3, 4, 1]
    assert model.batches[1] == pytest.approx([1, 1.1, 2, 2.1])
    check_own_rows(inputs, results)


def test_zero_delay_batches_only_what_is_already_queued():
    model = Recorder()
    batcher = DynamicBatcher([model], dynamic_batching=True, max_batch_size=8, max_delay_us=0)
    inputs = [request(v) for v in range(3)]
    results = run(lambda: asyncio.gather(*(batcher.submit(i) for i in inputs)), batcher)
    assert model.batches == [[0, 1, 2]]  # all three were queued before the worker woke
    check_own_rows(inputs, results)


def test_batching_off_runs_every_request_alone():
    model = Recorder()
    batcher = DynamicBatcher([model], dynamic_batching=False, max_batch_size=8,
                             max_delay_us=0)
    inputs = [request(v) for v in range(3)]
    results = run(lambda: asyncio.gather(*(batcher.submit(i) for i in inputs)), batcher)
    assert model.batches == [[0], [1], [2]]
    check_own_rows(inputs, results)


def test_two_instances_run_two_batches_at_the_same_time():
    barrier = threading.Barrier(2)  # each call waits for the other: needs two in parallel
    first, second = Recorder(barrier=barrier), Recorder(barrier=barrier)
    batcher = DynamicBatcher([first, second], dynamic_batching=False, max_batch_size=1)
    inputs = [request(0), request(1)]
    results = run(lambda: asyncio.gather(*(batcher.submit(i) for i in inputs)), batcher)
    assert sorted(first.batches + second.batches) == [[0], [1]]
    assert len(first.batches) == len(second.batches) == 1
    check_own_rows(inputs, results)


def test_a_failed_batch_fails_its_requests_only():
    model = Recorder(fail_on_rows=2)
    batcher = DynamicBatcher([model], dynamic_batching=True, max_batch_size=2,
                             max_delay_us=20_000)

    async def scenario():
        failed = await asyncio.gather(batcher.submit(request(0)), batcher.submit(request(1)),
                                      return_exceptions=True)
        after = await batcher.submit(request(2))
        return failed, after

    failed, after = run(scenario, batcher)
    assert [str(e) for e in failed] == ["model failed on a batch of 2"] * 2
    np.testing.assert_array_equal(after[0], request(2)["x"] * 10 + 1)
    assert model.batches == [[0, 1], [2]]


def test_different_sample_shapes_are_not_merged():
    model = Recorder()
    batcher = DynamicBatcher([model], dynamic_batching=True, max_batch_size=8,
                             max_delay_us=20_000)
    wide = {"x": np.ones((1, 3), dtype=np.float32) * 5}
    inputs = [request(0), wide, request(1)]
    run(lambda: asyncio.gather(*(batcher.submit(i) for i in inputs)), batcher)
    # FIFO: the odd one out ends the first batch and the third request follows it.
    assert model.batches == [[0], [5], [1]]


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="at least one inference function"):
        DynamicBatcher([], dynamic_batching=True, max_batch_size=4)
    with pytest.raises(ValueError, match="max_batch_size 0"):
        DynamicBatcher([Recorder()], dynamic_batching=True, max_batch_size=0)


def test_counters_split_queue_and_compute_time():
    model = Recorder()
    batcher = DynamicBatcher([model], dynamic_batching=True, max_batch_size=4,
                             max_delay_us=30_000)
    run(lambda: asyncio.gather(*(batcher.submit(request(v, rows=2)) for v in range(3))),
        batcher)
    stats = batcher.stats
    assert (stats.requests, stats.executions, stats.rows) == (3, 2, 6)  # [2+2], [2]
    # The third request waited out the whole delay before its batch started.
    assert stats.queue_ns >= 30_000_000 and stats.compute_ns > 0
