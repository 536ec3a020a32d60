"""A simple dynamic batcher for the project's own server, with Triton's two main knobs.

Requests wait in one FIFO queue. Each worker (one per model instance) takes the oldest
request and keeps adding the next ones while they fit in `max_batch_size` rows, until the
batch is full or `max_delay_us` has passed since it took the first; then it runs one
inference on the concatenated inputs and hands every request its own rows of the outputs.
A worker only gathers while it is idle, so a batch forms while the previous one runs, as an
idle Triton instance does. With dynamic batching off every request goes straight to the
instance threads, as a plain thread-pool server does: a thread takes the next request the
moment it finishes one, without a round trip through the event loop (that round trip cost
~20 % of throughput on 2 cores, measured side by side).

Each instance is one thread with its own inference function (its own session): a thread
binds to an instance when the pool starts it.

The batcher knows nothing about ONNX Runtime or HTTP: an inference function takes the
inputs by name (batch-major arrays) and returns the outputs as a list of batch-major arrays.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

InferFn = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


@dataclass
class _Pending:
    inputs: Mapping[str, np.ndarray]
    rows: int
    future: asyncio.Future = field(repr=False)
    queued_ns: int = field(default_factory=time.perf_counter_ns)

    def fits_with(self, first: _Pending) -> bool:
        """Same input names and per-sample shapes: only then can the two be concatenated."""
        return self.inputs.keys() == first.inputs.keys() and all(
            self.inputs[k].shape[1:] == first.inputs[k].shape[1:] for k in first.inputs)


@dataclass
class BatcherStats:
    """Cumulative counters (what ServerStats reports): a request's queue time runs from
    submit to the start of its batch's inference; its compute time is that inference."""

    requests: int = 0      # requests answered (successfully or not)
    executions: int = 0    # inference calls; fewer than requests when batches formed
    rows: int = 0          # samples inferred
    queue_ns: int = 0
    compute_ns: int = 0


class DynamicBatcher:
    """Batch concurrent requests for `len(infers)` workers, one inference function each.

    Use inside a running event loop: `start()`, then `await submit(inputs)` from any number
    of concurrent tasks, and `await stop()` at the end.
    """

    def __init__(self, infers: Sequence[InferFn], *, dynamic_batching: bool,
                 max_batch_size: int, max_delay_us: int = 0) -> None:
        if not infers:
            raise ValueError("the batcher needs at least one inference function (one per "
                             "model instance)")
        if max_batch_size < 1 or max_delay_us < 0:
            raise ValueError(f"max_batch_size {max_batch_size!r} must be >= 1 and "
                             f"max_delay_us {max_delay_us!r} >= 0")
        self.dynamic_batching = dynamic_batching
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_us / 1e6
        self._infers = list(infers)
        self.stats = BatcherStats()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._changed: asyncio.Condition | None = None
        self._gathering: asyncio.Lock | None = None
        self._workers: list[asyncio.Task] = []
        # One thread per instance; each thread binds to its own instance when it starts.
        self._bound = threading.local()
        self._next_instance = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=len(infers), thread_name_prefix="instance",
                                        initializer=self._bind_instance)

    def _bind_instance(self) -> None:
        self._bound.index = next(self._next_instance)

    def _infer_timed(self, inputs: Mapping[str, np.ndarray]) -> tuple[list, int, int]:
        """Runs on an instance thread: (outputs, started_ns, ended_ns)."""
        started_ns = time.perf_counter_ns()
        outputs = self._infers[self._bound.index](dict(inputs))
        return outputs, started_ns, time.perf_counter_ns()

    def start(self) -> None:
        self._changed = asyncio.Condition()
        # One idle worker gathers at a time, so requests fill one batch instead of being
        # spread over every idle instance.
        self._gathering = asyncio.Lock()
        if self.dynamic_batching:
            self._workers = [asyncio.create_task(self._work(), name=f"batcher-worker-{i}")
                             for i in range(len(self._infers))]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._pool.shutdown(wait=True)

    async def submit(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Queue one request (batch-major inputs); its rows of every output, in order."""
        if self._changed is None:
            raise RuntimeError("DynamicBatcher.start() was not called")
        rows = {len(v) for v in inputs.values()}
        if len(rows) != 1:
            raise ValueError(f"inputs disagree on the batch size: {sorted(rows)}")
        loop = asyncio.get_running_loop()
        if not self.dynamic_batching:
            queued_ns = time.perf_counter_ns()
            try:
                outputs, started_ns, ended_ns = await loop.run_in_executor(
                    self._pool, self._infer_timed, inputs)
            except Exception:
                self.stats.requests += 1
                raise
            item = _Pending(inputs, rows.pop(), loop.create_future(), queued_ns)
            self._count([item], started_ns, ended_ns)
            return list(outputs)
        item = _Pending(inputs, rows.pop(), loop.create_future())
        async with self._changed:
            self._pending.append(item)
            self._changed.notify_all()
        return await item.future

    async def _gather(self) -> list[_Pending]:
        """Wait for the oldest request, then add followers until full or the delay ends."""
        assert self._changed is not None and self._gathering is not None
        loop = asyncio.get_running_loop()
        async with self._gathering, self._changed:
            await self._changed.wait_for(lambda: bool(self._pending))
            batch = [self._pending.popleft()]
            if not self.dynamic_batching:
                return batch
            rows, deadline = batch[0].rows, loop.time() + self.max_delay_s
            while rows < self.max_batch_size:
                if self._pending:
                    follower = self._pending[0]
                    if rows + follower.rows > self.max_batch_size or \
                            not follower.fits_with(batch[0]):
                        break  # it starts the next batch (FIFO: nothing overtakes it)
                    batch.append(self._pending.popleft())
                    rows += follower.rows
                    continue
                remaining_s = deadline - loop.time()
                if remaining_s <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining_s)
                except TimeoutError:
                    break
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [p for p in batch if not p.future.done()]  # a client may have gone
            if not live:
                continue
            try:
                names = list(live[0].inputs)
                merged = {n: live[0].inputs[n] if len(live) == 1 else
                          np.concatenate([p.inputs[n] for p in live]) for n in names}
                try:
                    outputs, started_ns, ended_ns = await loop.run_in_executor(
                        self._pool, self._infer_timed, merged)
                except Exception:
                    self.stats.requests += len(live)
                    raise
                self._count(live, started_ns, ended_ns)
                parts = _split(outputs, [p.rows for p in live])
            except Exception as exc:  # noqa: BLE001 - every request of the batch gets it
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, part in zip(live, parts, strict=True):
                if not p.future.done():
                    p.future.set_result(part)

    def _count(self, batch: list[_Pending], started_ns: int, ended_ns: int) -> None:
        stats = self.stats
        stats.executions += 1
        stats.requests += len(batch)
        stats.rows += sum(p.rows for p in batch)
        stats.queue_ns += sum(started_ns - p.queued_ns for p in batch)
        stats.compute_ns += (ended_ns - started_ns) * len(batch)


def _split(outputs: Sequence[np.ndarray], rows: list[int]) -> list[list[np.ndarray]]:
    """Cut every batch-major output into each request's rows."""
    total = sum(rows)
    for out in outputs:
        if len(out) != total:
            raise ValueError(f"an output has {len(out)} rows for a batch of {total}: the "
                             "model is not batch-major, so its requests cannot be batched")
    cuts = np.cumsum(rows)[:-1]
    per_output = [np.split(np.asarray(out), cuts) for out in outputs]
    return [[parts[i] for parts in per_output] for i in range(len(rows))]
