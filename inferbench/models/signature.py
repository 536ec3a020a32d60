"""A model's input signature: the name, element type and per-sample shape of each input
tensor, and how the benchmark fills it with data.

Every place that makes or reads a request derives from it: the converters trace the model
with it, the servers declare it (Triton's config, MLServer's settings, the TorchServe
handler, the FastAPI server's TorchScript runtime), and the load stage draws its payloads
from it. The canonical generator's models take one float32 tensor named "input"; a
language model like BERT takes integer token ids and an attention mask.

Its text form, `name:dtype:d1,d2;name:dtype:d1`, is how a server process is told it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from inferbench.errors import InferBenchError

if TYPE_CHECKING:  # numpy is imported where payloads are drawn: servers' lookups stay light
    import numpy as np


class Fill(StrEnum):
    """What a benchmark payload holds in a tensor."""

    NORMAL = "normal"  # float: standard normal values
    TOKENS = "tokens"  # integer: token ids drawn uniformly from [0, vocab)
    MASK = "mask"      # integer: ones over the sequence (every token attended)


# The element types an input may have, as numpy names them, with their KServe V2 names.
DTYPES = {"float32": "FP32", "int64": "INT64"}


@dataclass(frozen=True)
class TensorSpec:
    """One input tensor: its name, numpy element type, one sample's shape (no batch
    dimension), and how payloads fill it."""

    name: str
    dtype: str = "float32"
    shape: tuple[int, ...] = ()
    fill: Fill = Fill.NORMAL
    vocab: int = 0  # Fill.TOKENS: ids are drawn from [0, vocab)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InferBenchError(f"input {self.name!r}: element type {self.dtype!r} is not "
                                  f"one the benchmark sends; fix: one of {list(DTYPES)}")

    @property
    def datatype(self) -> str:
        """Its KServe V2 datatype name (FP32, INT64)."""
        return DTYPES[self.dtype]


# The name of the one input of a single-input model (the generator's, an image classifier's).
SINGLE_INPUT = "input"


def single_input(shape: Sequence[int]) -> tuple[TensorSpec, ...]:
    """The signature of a model taking one float32 tensor of `shape` per sample."""
    return (TensorSpec(SINGLE_INPUT, "float32", tuple(int(d) for d in shape)),)


def to_text(inputs: Iterable[TensorSpec]) -> str:
    """`name:dtype:d1,d2;...`: the signature as a server process's argument takes it."""
    return ";".join(f"{t.name}:{t.dtype}:{','.join(map(str, t.shape))}" for t in inputs)


def from_text(text: str) -> tuple[TensorSpec, ...]:
    """The signature of to_text's form (names, types and shapes; payload fills do not
    travel: a server only needs to declare the tensors)."""
    inputs = []
    for part in filter(None, text.split(";")):
        try:
            name, dtype, dims = part.split(":")
            shape = tuple(int(d) for d in dims.split(",") if d)
        except ValueError:
            raise InferBenchError(f"input signature {part!r} is not name:dtype:d1,d2 (e.g. "
                                  "input:float32:3,32,32)") from None
        inputs.append(TensorSpec(name, dtype, shape))
    if not inputs:
        raise InferBenchError(f"input signature {text!r} names no input; fix: give "
                              "name:dtype:d1,d2 for each, separated by ';'")
    return tuple(inputs)


def to_json(inputs: Iterable[TensorSpec]) -> list[dict]:
    """The whole signature, fills included: what a run keeps in model/signature.json."""
    return [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "fill": t.fill.value,
             "vocab": t.vocab} for t in inputs]


def from_json(data: Iterable[Mapping]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(d["name"], d["dtype"], tuple(d["shape"]), Fill(d["fill"]),
                            d.get("vocab", 0)) for d in data)


def sample_inputs(inputs: Sequence[TensorSpec], batch_size: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One batch of payload for every input, in signature order."""
    import numpy as np

    batch: dict[str, np.ndarray] = {}
    for t in inputs:
        shape = (batch_size, *t.shape)
        if t.fill is Fill.TOKENS:
            batch[t.name] = rng.integers(0, t.vocab, size=shape, dtype=np.int64)
        elif t.fill is Fill.MASK:
            batch[t.name] = np.ones(shape, dtype=np.int64)
        else:
            batch[t.name] = rng.standard_normal(shape, dtype=np.float32)
    return batch


def as_inputs(batch: np.ndarray | Mapping[str, np.ndarray],
              name: str = SINGLE_INPUT) -> dict[str, np.ndarray]:
    """A batch by input name: a lone array is the single input `name`."""
    if isinstance(batch, Mapping):
        return dict(batch)
    return {name: batch}


def batch_size_of(inputs: Mapping[str, np.ndarray]) -> int:
    """The batch size of a request: every input's first dimension, which must agree."""
    sizes = {len(a) for a in inputs.values()}
    if len(sizes) != 1:
        shapes = {k: v.shape for k, v in inputs.items()}
        raise InferBenchError(f"inputs {shapes} disagree on the batch size (first dimension)")
    return sizes.pop()
