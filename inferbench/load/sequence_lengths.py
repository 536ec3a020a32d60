"""Variable-length sequences: each request's length drawn from a distribution, its payload
shaped as the spec's padding says, and its latency grouped by length afterwards.

A request of batch b draws one length per sample; it is as long as its longest sample
(L), and is sent with a sequence axis of S >= L: the model's full sequence (padding "max"),
the next bucket (padding "buckets"), or L itself (padding "none"). Positions past a
sample's own length are padding: token id 0 with attention mask 0 for a text model, zeros
for a float sequence (an LSTM or attention stack, which has no mask: padding is computed
like any input, which is the cost padding has).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inferbench import user_files
from inferbench.errors import InferBenchError
from inferbench.models.signature import Fill, TensorSpec
from inferbench.spec import LengthDistribution, Padding, SequenceLengthSpec

# Distinct payloads a variable-length point rotates over: enough to follow the distribution
# (a request draws one of them in turn), few enough to encode up front.
VARIABLE_PAYLOADS = 64
MAX_LENGTHS_BYTES = 4 << 20  # a trace file of lengths


def default_buckets(sequence: int) -> list[int]:
    """Powers of two from 16 below the model's sequence, and the sequence itself."""
    out, b = [], 16
    while b < sequence:
        out.append(b)
        b *= 2
    return [*out, sequence]


def buckets_of(spec: SequenceLengthSpec, sequence: int) -> list[int]:
    """The padded lengths (padding "buckets"), or the report's length buckets otherwise:
    the spec's buckets, else quartiles of the sequence."""
    if spec.buckets:
        return list(spec.buckets)
    if spec.padding is Padding.BUCKETS:
        return default_buckets(sequence)
    return sorted({max(1, sequence * q // 4) for q in (1, 2, 3, 4)})


def load_lengths(path: str, sequence: int, dirs: Sequence[Path] | None = None) -> np.ndarray:
    """A trace of lengths: one positive integer per line, none above the sequence."""
    text = user_files.read_text(path, field="workload.sequence_length.trace_path",
                                max_bytes=MAX_LENGTHS_BYTES,
                                dirs=user_files.data_dirs() if dirs is None else dirs)
    name = f"workload.sequence_length.trace_path {path!r}"
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            values.append(int(line.strip()))
        except ValueError:
            raise InferBenchError(f"{name} line {number} is not a whole number; fix: one "
                                  "length per line") from None
        if not 1 <= values[-1] <= sequence:
            raise InferBenchError(f"{name} line {number}: length {values[-1]} is outside 1.."
                                  f"{sequence} (the model's sequence); fix: keep lengths "
                                  "within it")
    if not values:
        raise InferBenchError(f"{name} holds no length; fix: one length per line")
    return np.asarray(values, dtype=np.int64)


def draw_lengths(spec: SequenceLengthSpec, sequence: int, n: int,
                 rng: np.random.Generator, trace: np.ndarray | None = None) -> np.ndarray:
    """n lengths from the distribution, each in 1..sequence."""
    d = spec.distribution
    if d is LengthDistribution.FIXED:
        return np.full(n, spec.length, dtype=np.int64)
    if d is LengthDistribution.UNIFORM:
        return rng.integers(spec.min, spec.max + 1, size=n, dtype=np.int64)
    if d is LengthDistribution.LOGNORMAL:
        raw = np.rint(rng.lognormal(np.log(spec.median), spec.sigma, size=n))
        return np.clip(raw, spec.min or 1, spec.max or sequence).astype(np.int64)
    assert trace is not None
    return trace[np.arange(n) % len(trace)]


def padded_length(length: int, padding: Padding, sequence: int, buckets: Sequence[int]) -> int:
    if padding is Padding.MAX:
        return sequence
    if padding is Padding.NONE:
        return length
    return buckets[min(bisect.bisect_left(buckets, length), len(buckets) - 1)]


@dataclass(frozen=True)
class VariablePayloads:
    """The payloads of one point and what each one is: its longest sample (the length it
    is reported under) and the sequence axis it is sent with."""

    batches: list[dict[str, np.ndarray]]
    lengths: np.ndarray   # per payload: the longest sample's length
    padded: np.ndarray    # per payload: the sequence axis sent

    def per_request(self, payload: np.ndarray) -> dict[str, np.ndarray]:
        """Each recorded request's length and padded length, from its payload index."""
        payload = np.asarray(payload, dtype=np.int64)
        return {"seq_len": self.lengths[payload].astype(np.int32),
                "padded_len": self.padded[payload].astype(np.int32)}


def variable_payloads(inputs: Sequence[TensorSpec], spec: SequenceLengthSpec, batch_size: int,
                      rng: np.random.Generator, trace: np.ndarray | None = None,
                      n: int = VARIABLE_PAYLOADS) -> VariablePayloads:
    """n payloads whose samples have drawn lengths, padded as the spec says. Every input's
    first sample axis is the sequence (BERT's ids and mask, an LSTM's time steps)."""
    sequence = inputs[0].shape[0]
    buckets = buckets_of(spec, sequence)
    batches, longest, padded = [], [], []
    for lengths in draw_lengths(spec, sequence, n * batch_size, rng, trace).reshape(
            n, batch_size):
        top = int(lengths.max())
        width = padded_length(top, spec.padding, sequence, buckets)
        inside = np.arange(width)[None, :] < lengths[:, None]  # [batch, width]
        batch = {}
        for t in inputs:
            shape = (batch_size, width, *t.shape[1:])
            if t.fill is Fill.TOKENS:
                values = rng.integers(1, t.vocab, size=shape, dtype=np.int64) * inside
            elif t.fill is Fill.MASK:
                values = inside.astype(np.int64)
            else:
                mask = inside.reshape(batch_size, width, *([1] * (len(shape) - 2)))
                values = rng.standard_normal(shape, dtype=np.float32) * mask
            batch[t.name] = values.astype(t.dtype, copy=False)
        batches.append(batch)
        longest.append(top)
        padded.append(width)
    return VariablePayloads(batches, np.asarray(longest), np.asarray(padded))


def free_sequence_inputs(inputs: Sequence[TensorSpec]) -> tuple[TensorSpec, ...]:
    """The signature a server declares when requests come at several lengths: each input's
    sequence axis (its first sample axis) free, as -1."""
    from dataclasses import replace

    return tuple(replace(t, shape=(-1, *t.shape[1:])) for t in inputs)
