"""The benchmark spec: one pydantic model whose JSON schema also becomes the DAG's Params.

A user writes a few lines of JSON; everything the pipeline does is decided by this model.
Field descriptions are shown as help text in the Airflow trigger form.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from inferbench.budgets import (
    MAX_PLANNED_S,
    MAX_POINT_S,
    MAX_RATE_RPS,
    MAX_REQUEST_ELEMENTS,
)
from inferbench.cpu_pinning import parse_cpu_list
from inferbench.errors import InferBenchError
from inferbench.gpu_sharing import Sharing
from inferbench.load.http import MAX_CONNECTIONS
from inferbench.models.architectures import ARCHITECTURES
from inferbench.models.signature import DTYPES, TensorSpec, single_input
from inferbench.models.user_model import (
    MODEL_FILE_SUFFIXES,
    REGISTERED_NAME,
    format_of,
    formats_mismatch,
)
from inferbench.network.profiles import PROFILES

# The platform names, and the formats and transports platforms are described by, live with
# the platform descriptors (inferbench/platforms.py); importing them from here still works.
from inferbench.platforms import (
    DEVICE_PATTERN,
    DeviceKind,
    ModelFormat,
    Platform,
    Transport,
    device_kind,
)


class ModelFamily(StrEnum):
    """Block types of the canonical model generator."""

    FC = "fc"
    CNN = "cnn"
    LSTM = "lstm"
    ATTENTION = "attention"


# Well-known architectures built from their definitions, named as their facts are
# (inferbench/models/architectures.py).
Architecture = StrEnum("Architecture", {name.upper(): name for name in ARCHITECTURES})


class Arrival(StrEnum):
    """How requests arrive; all but closed_loop are open loop (see inferbench/load/arrivals)."""

    CLOSED_LOOP = "closed_loop"
    POISSON = "poisson"
    CONSTANT = "constant"
    GAMMA = "gamma"
    STEP = "step"
    SPIKE = "spike"
    RAMP = "ramp"
    TRACE = "trace"


# Which optional WorkloadSpec fields each arrival needs; any other optional field is refused.
ARRIVAL_FIELDS: dict[Arrival, tuple[str, ...]] = {
    Arrival.CLOSED_LOOP: ("concurrency",),
    Arrival.POISSON: ("rate_rps",),
    Arrival.CONSTANT: ("rate_rps",),
    Arrival.GAMMA: ("rate_rps", "burstiness"),
    Arrival.STEP: ("rate_rps", "peak_rate_rps", "change_at_s"),
    Arrival.SPIKE: ("rate_rps", "peak_rate_rps", "change_at_s", "change_duration_s"),
    Arrival.RAMP: ("rate_rps", "peak_rate_rps", "change_at_s", "change_duration_s"),
    Arrival.TRACE: ("trace_path",),
}
# Arrivals whose load can climb a ladder: those with one steady rate (or concurrency).
LADDER_ARRIVALS = (Arrival.POISSON, Arrival.CONSTANT, Arrival.GAMMA, Arrival.CLOSED_LOOP)
# A closed-loop client holds one HTTP connection of the issuer's pool, which keeps a spare.
MAX_CONCURRENCY = MAX_CONNECTIONS - 1
_Rate = Annotated[float, Field(gt=0, le=MAX_RATE_RPS)]
_Clients = Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]
_FIELD_EXAMPLE = {"concurrency": "4", "rate_rps": "50", "burstiness": "4",
                  "peak_rate_rps": "200", "change_at_s": "5", "change_duration_s": "2",
                  "trace_path": '"trace.csv"'}


class _Strict(BaseModel):
    # NaN and infinity (which Python's JSON reader accepts) are refused in every number.
    model_config = ConfigDict(extra="forbid", use_enum_values=False, frozen=True,
                              allow_inf_nan=False)


# The element types a request may carry, as numpy names them (models/signature.py).
ElementType = StrEnum("ElementType", {name.upper(): name for name in DTYPES})


class InputSpec(_Strict):
    """What a model file leaves open about one of its inputs: a TorchScript file names its
    inputs but not their types or shapes; an ONNX or SavedModel file may leave an axis
    other than the batch free (a sequence length)."""

    name: str = Field(min_length=1, max_length=200, description="The input's name in the file.")
    dtype: ElementType | None = Field(
        None, description="Element type (float32 or int64); must agree with the file's where "
        "it has one.")
    shape: list[int] | None = Field(
        None, min_length=0, max_length=8, description="One sample's shape, without the batch "
        "dimension; fixes the file's free axes and must agree with its fixed ones.")
    vocab: int | None = Field(
        None, ge=1, le=10_000_000, description="An int64 input of token ids: ids are drawn "
        "from [0, vocab). (An int64 input named like *mask* is filled with ones instead.)")


# The fields that size a generated model: a model file has its own.
GENERATOR_FIELDS = ("depth", "width", "input_shape", "num_outputs", "seed")


class ModelSpec(_Strict):
    """The model: from the canonical generator (`depth` blocks of one `family`) or a
    well-known `architecture`, both with seeded random weights; or the user's own file
    (`path`, or a `registered` name), served as given."""

    family: ModelFamily | None = Field(
        None, description="Block type of the canonical generator: fc, cnn (residual), lstm or "
        "attention. Give this or architecture.")
    architecture: Architecture | None = Field(
        None, description="A well-known architecture built from its published definition with "
        "seeded random weights: resnet50 or mobilenet_v2 (input_shape defaults to "
        "[3, 224, 224], num_outputs to 1000), or bert_base (input_shape [sequence], default "
        "[128]: int64 token ids and an attention mask; num_outputs 2); depth and width do not "
        "apply. Give this or family.")
    path: str | None = Field(
        None, min_length=1, max_length=4096, description="Your own model file, served as "
        f"given (no conversion): ONNX ({', '.join(MODEL_FILE_SUFFIXES['onnx'])}), TorchScript "
        f"({', '.join(MODEL_FILE_SUFFIXES['torchscript'])}) or a SavedModel directory; inside "
        "the data directories (INFERBENCH_DATA_DIRS). Its inputs are read from the file; "
        "formats default to its own.")
    registered: str | None = Field(
        None, pattern=REGISTERED_NAME, description="A model file added to the registry with "
        "`inferbench models add NAME FILE` (see `inferbench models list`).")
    inputs: list[InputSpec] | None = Field(
        None, max_length=16, description="A model file's inputs where the file leaves them "
        "open: a TorchScript file's types and shapes, a free sequence axis, the vocabulary "
        "of token ids.")
    depth: int = Field(2, ge=1, le=64, description="Number of stacked blocks.")
    width: int = Field(
        32, ge=1, le=4096, description="Hidden width: units (fc/lstm/attention) or channels (cnn)."
    )
    input_shape: list[int] | None = Field(
        None, description="Shape of one sample, without the batch dimension (required for a "
        "family). fc: [features]; cnn: [channels, height, width]; lstm/attention: "
        "[sequence, features]; resnet50 / mobilenet_v2: [3, height, width]; bert_base: "
        "[sequence] (an architecture's own default when omitted).",
        min_length=1,
        max_length=3,
    )
    num_outputs: int = Field(10, ge=1, le=100_000, description="Size of the output layer.")
    seed: int = Field(0, ge=0, description="Seed of the random weights.")

    @model_validator(mode="before")
    @classmethod
    def _architecture_defaults(cls, data: Any) -> Any:
        """An architecture's own input shape and head size where the spec leaves them out."""
        if isinstance(data, dict) and data.get("architecture") in ARCHITECTURES:
            facts = ARCHITECTURES[str(data["architecture"])]
            data = {"input_shape": list(facts.input_shape),
                    "num_outputs": facts.num_outputs, **data}
        return data

    @model_validator(mode="after")
    def _check_shape(self) -> ModelSpec:
        sources = [f for f in ("family", "architecture", "path", "registered")
                   if getattr(self, f) is not None]
        if len(sources) != 1:
            given = (" and ".join(sources) if sources
                     else "none of family, architecture, path and registered")
            raise ValueError(
                f"model gives {given}; fix: give exactly one: family (the canonical generator: "
                f"{[f.value for f in ModelFamily]!r}), architecture "
                f"({[a.value for a in Architecture]!r}), path (your model file) or registered "
                "(a name from `inferbench models list`)")
        if self.is_file:
            self._check_file()
            return self
        if self.inputs is not None:
            raise ValueError("model.inputs describes a model file's open inputs; a generated "
                             "model has its own; fix: remove inputs")
        if self.input_shape is None:
            raise ValueError(f"model.input_shape is missing; family {self.family.value!r} "
                             "needs it (see the field's description); fix: e.g. [3, 32, 32] "
                             "for cnn")
        if self.architecture is not None:
            self._check_architecture()
        expected = len(ARCHITECTURES[self.architecture.value].input_shape) \
            if self.family is None else {
                ModelFamily.FC: 1, ModelFamily.CNN: 3, ModelFamily.LSTM: 2,
                ModelFamily.ATTENTION: 2}[self.family]
        if len(self.input_shape) != expected:
            raise ValueError(
                f"input_shape {self.input_shape!r} has {len(self.input_shape)} dimension(s) but "
                f"{self.kind!r} takes {expected}; fix: give {expected} numbers "
                "(see the field's description)"
            )
        if any(d < 1 for d in self.input_shape):
            raise ValueError(f"input_shape {self.input_shape!r}: every dimension must be >= 1")
        if self.sample_elements > MAX_REQUEST_ELEMENTS:
            raise ValueError(
                f"input_shape {self.input_shape!r} has {self.sample_elements} numbers per "
                f"sample, over the limit of {MAX_REQUEST_ELEMENTS} per request; fix: use "
                "smaller dimensions")
        if self.family is ModelFamily.ATTENTION and self.width % 4:
            raise ValueError(
                f"width {self.width!r}: attention blocks use 4 heads, so width must be a "
                "multiple of 4"
            )
        return self

    def _changed(self, fields: tuple[str, ...]) -> list[str]:
        """Those of `fields` the spec sets to other than their default (at their defaults
        they are what a dumped spec carries back: only a change is refused)."""
        return [f for f in fields if f in self.model_fields_set
                and getattr(self, f) != type(self).model_fields[f].default]

    def _check_file(self) -> None:
        sized = self._changed(GENERATOR_FIELDS)
        if sized:
            raise ValueError(
                f"model.{sized[0]} sizes a generated model; a model file has its own (its "
                f"inputs are read from the file, model.inputs fills what it leaves open); "
                f"fix: remove {' and '.join(sized)}")
        if self.path is not None and format_of(self.path) is None:
            raise ValueError(
                f"model.path {self.path!r} is not a model file the benchmark can serve; fix: "
                f"an ONNX file ({', '.join(MODEL_FILE_SUFFIXES['onnx'])}), a TorchScript file "
                f"({', '.join(MODEL_FILE_SUFFIXES['torchscript'])}) or a SavedModel directory")
        names = [i.name for i in self.inputs or ()]
        if len(set(names)) != len(names):
            raise ValueError(f"model.inputs names {names!r}: an input is listed twice; fix: "
                             "list each once")

    def _check_architecture(self) -> None:
        facts = ARCHITECTURES[self.architecture.value]
        generator_only = self._changed(("depth", "width"))
        if generator_only:
            raise ValueError(
                f"model.{generator_only[0]} sizes the canonical generator's blocks; "
                f"architecture {self.architecture.value!r} has its own ({facts.definition}); "
                f"fix: remove {' and '.join(generator_only)}")
        shape = self.input_shape
        if facts.text:
            if len(shape) == 1 and not 1 <= shape[0] <= facts.max_sequence:
                raise ValueError(
                    f"input_shape {shape!r}: {self.architecture.value} takes sequences of 1 to "
                    f"{facts.max_sequence} tokens (its position embeddings); fix: e.g. "
                    f"{list(facts.input_shape)!r} (its default: leave input_shape out)")
            return
        if len(shape) == 3 and (shape[0] != facts.input_shape[0]
                                or min(shape[1:]) < facts.min_side):
            raise ValueError(
                f"input_shape {shape!r}: {self.architecture.value} takes {facts.input_shape[0]} "
                f"channels and images of at least {facts.min_side} x {facts.min_side}; fix: "
                f"e.g. {list(facts.input_shape)!r} (its default: leave input_shape out)")

    @property
    def is_file(self) -> bool:
        """A model the user brought (a path or a registered name), served as given."""
        return self.path is not None or self.registered is not None

    @property
    def kind(self) -> str:
        """The model's family, its architecture's name, or "file" / "registered" (what runs
        are grouped by)."""
        if self.is_file:
            return "file" if self.path is not None else "registered"
        return self.architecture.value if self.architecture is not None else self.family.value

    @property
    def generated_inputs(self) -> tuple[TensorSpec, ...]:
        """A generated model's input signature: one float32 tensor of input_shape, or an
        architecture's own (BERT: token ids and an attention mask of input_shape). A model
        file's is read from the file by the generate stage (the run's model/signature.json)."""
        if self.is_file:
            raise InferBenchError("a model file's inputs are read from the file by the generate "
                                  "stage; read the run's signature (stages.common.run_signature)")
        if self.architecture is not None:
            return ARCHITECTURES[self.architecture.value].inputs(tuple(self.input_shape))
        return single_input(self.input_shape)

    @property
    def sequence(self) -> int | None:
        """The length of a generated model's sequence axis (the first of input_shape): BERT's
        tokens, an LSTM's or attention stack's time steps; None for a model without one."""
        if self.architecture is not None:
            return self.input_shape[0] if ARCHITECTURES[self.architecture.value].text else None
        if self.family in (ModelFamily.LSTM, ModelFamily.ATTENTION):
            return self.input_shape[0]
        return None

    @property
    def sample_elements(self) -> int:
        """Numbers in one sample of a generated model's inputs, all of them together."""
        return sum(math.prod(t.shape) for t in self.generated_inputs)

    @property
    def name(self) -> str:
        if self.is_file:
            return (f"registered_{self.registered}" if self.registered is not None
                    else "file_" + re.sub(r"[^A-Za-z0-9_]", "_", Path(self.path).stem)[:64])
        shape = "x".join(str(d) for d in self.input_shape)
        if self.architecture is not None:
            return f"{self.architecture.value}_in{shape}_o{self.num_outputs}_s{self.seed}"
        return f"{self.family.value}_d{self.depth}_w{self.width}_in{shape}_s{self.seed}"


class LengthDistribution(StrEnum):
    """How each request's sequence length is drawn (see inferbench/load/sequence_lengths.py)."""

    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"
    TRACE = "trace"


class Padding(StrEnum):
    """How a request of length L is shaped for the server."""

    MAX = "max"          # padded to the model's sequence (input_shape): one shape, any server
    BUCKETS = "buckets"  # padded up to the next bucket: a few shapes
    NONE = "none"        # sent at its own length: the server takes any (dynamic shapes)


# Which optional SequenceLengthSpec fields each distribution needs; the others are refused.
LENGTH_FIELDS: dict[LengthDistribution, tuple[str, ...]] = {
    LengthDistribution.FIXED: ("length",),
    LengthDistribution.UNIFORM: ("min", "max"),
    LengthDistribution.LOGNORMAL: ("median", "sigma"),
    LengthDistribution.TRACE: ("trace_path",),
}
_LENGTH_EXAMPLE = {"length": "64", "min": "8", "max": "128", "median": "48", "sigma": "0.6",
                   "trace_path": '"lengths.txt"'}


class SequenceLengthSpec(_Strict):
    """Variable-length sequences: each request's length is drawn, padded as `padding` says,
    and its latency reported by length bucket."""

    distribution: LengthDistribution = Field(
        description="fixed (length), uniform (min..max), lognormal (median, sigma; clipped "
        "to min..max when given) or trace (a file of lengths, one per line, replayed in turn).")
    length: int | None = Field(None, ge=1, description="fixed only: every request's length.")
    min: int | None = Field(None, ge=1, description="uniform: the shortest; lognormal: "
                            "lengths below are raised to it.")
    max: int | None = Field(None, ge=1, description="uniform: the longest; lognormal: lengths "
                            "above are cut to it (default: the model's sequence).")
    median: float | None = Field(None, gt=0, description="lognormal only: the median length.")
    sigma: float | None = Field(None, gt=0, le=4, description="lognormal only: the spread "
                                "(standard deviation of the log length).")
    trace_path: str | None = Field(None, min_length=1, description="trace only: a text file "
                                   "of lengths, one per line (in the data directories).")
    padding: Padding = Field(
        Padding.MAX, description="max: every request padded to the model's sequence "
        "(input_shape), served by every platform; buckets: padded up to the next of "
        "`buckets`; none: sent at its own length. buckets and none need a server that takes "
        "a free sequence axis (validation names the platforms that do).")
    buckets: list[int] | None = Field(
        None, min_length=1, max_length=32, description="buckets only: the padded lengths, "
        "ascending (default: powers of two from 16, and the model's sequence). The report's "
        "length buckets are these (or quartiles of the sequence).")

    @model_validator(mode="after")
    def _check_fields(self) -> SequenceLengthSpec:
        needed = LENGTH_FIELDS[self.distribution]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"sequence_length.distribution {self.distribution.value!r} "
                                 f"needs {name}; fix: add e.g. \"{name}\": "
                                 f"{_LENGTH_EXAMPLE[name]}")
        optional = {"min", "max"} if self.distribution is LengthDistribution.LOGNORMAL else set()
        for name in _LENGTH_EXAMPLE:
            if name not in needed and name not in optional and getattr(self, name) is not None:
                raise ValueError(f"sequence_length.{name} does not apply to distribution "
                                 f"{self.distribution.value!r}; fix: remove it")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"sequence_length.min {self.min} is above max {self.max}; fix: "
                             "swap them")
        if self.buckets is not None:
            if self.padding is not Padding.BUCKETS:
                raise ValueError("sequence_length.buckets applies to padding \"buckets\" "
                                 "only; fix: remove buckets or set padding to \"buckets\"")
            if sorted(set(self.buckets)) != self.buckets or min(self.buckets) < 1:
                raise ValueError(f"sequence_length.buckets {self.buckets!r} must be positive "
                                 "and strictly ascending; fix: e.g. [32, 64, 128]")
        return self

    @property
    def longest(self) -> int | None:
        """The longest length the distribution can draw (None: a trace's, read at load)."""
        return self.length if self.distribution is LengthDistribution.FIXED else self.max


class WorkloadSpec(_Strict):
    """How requests arrive: a closed loop of `concurrency` clients, or an open-loop process."""

    arrival: Arrival = Field(description="closed_loop (fixed concurrency) or an open-loop "
                             "process: poisson, constant, gamma (bursts), step, spike, ramp "
                             "(time-varying Poisson) or trace (replay of a CSV).")
    # A list in either field is a load ladder (see LadderSpec): one point per value.
    concurrency: _Clients | Annotated[list[_Clients], Field(min_length=1)] | None = Field(
        None, description=f"closed_loop only: requests in flight at all times "
        f"(1..{MAX_CONCURRENCY}). A list, e.g. [1, 2, 4, 8], measures each in turn (a "
        "ladder); with ladder.mode \"search\" the number is where the search starts."
    )
    rate_rps: _Rate | Annotated[list[_Rate], Field(min_length=1)] | None = Field(
        None, description=f"open loop (not trace): mean arrival rate, requests/second "
        f"(> 0, <= {MAX_RATE_RPS:g}); the base rate of step / spike / ramp. A list, e.g. "
        "[50, 100, 200] (poisson, constant, gamma), measures each rate in turn (a ladder); "
        "with ladder.mode \"search\" the number is where the search starts."
    )
    seed: int = Field(0, ge=0, description="Seed of the arrival schedule and request data.")
    burstiness: float | None = Field(
        None, gt=0, le=100, description="gamma only: squared coefficient of variation of the "
        "gaps between arrivals (1 = Poisson, > 1 burstier, < 1 smoother).")
    peak_rate_rps: float | None = Field(
        None, gt=0, le=100_000, description="step / spike / ramp only: the rate after the "
        "step, during the spike, or at the end of the ramp (rate_rps is the base rate).")
    change_at_s: float | None = Field(
        None, ge=0, description="step / spike / ramp only: seconds into the point when the "
        "rate starts to change.")
    change_duration_s: float | None = Field(
        None, gt=0, description="spike: how long the peak lasts; ramp: how long the rate "
        "takes to go from rate_rps to peak_rate_rps (seconds).")
    trace_path: str | None = Field(
        None, min_length=1, description="trace only: CSV file of request timestamps in "
        "seconds, optionally with an integer payload id as second column; replayed as is.")
    transport: Transport = Field(
        Transport.HTTP, description="http (each platform's own HTTP API) or grpc (the "
        "platform's gRPC service, on the platforms that have one; validation names them).")
    sequence_length: SequenceLengthSpec | None = Field(
        None, description="Variable-length sequences (bert_base, lstm, attention): each "
        "request's length drawn from a distribution, padded or sent as is, latency reported "
        "by length bucket. Default: every request at the model's full sequence.")

    @property
    def open_loop(self) -> bool:
        return self.arrival is not Arrival.CLOSED_LOOP

    @field_validator("rate_rps", "concurrency", mode="before")
    @classmethod
    def _check_load_range(cls, value: Any, info) -> Any:
        # Before pydantic's own checks: one message that names the bound, not one per
        # member of the number-or-list union.
        name = info.field_name
        values = _as_list(value) if value is not None else []
        if isinstance(value, list) and not values:
            raise ValueError("an empty list runs no point; fix: give at least one value")
        kind = "rate" if name == "rate_rps" else "number of clients"
        for v in values:
            try:
                float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{v!r} is not a {kind}; fix: give a number, or a list of "
                                 f"numbers for a ladder, e.g. {_FIELD_EXAMPLE[name]}") from None
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if name == "rate_rps":
            allowed = (f"each rate must be greater than 0 and at most {MAX_RATE_RPS:g} "
                       "requests/second")
            bad = [v for v in numbers if not 0 < v <= MAX_RATE_RPS]
        else:
            allowed = f"each concurrency must be 1..{MAX_CONCURRENCY} clients"
            bad = [v for v in numbers if not 1 <= v <= MAX_CONCURRENCY]
        if bad:
            raise ValueError(f"{bad[0]!r} is out of range: {allowed}; fix: e.g. "
                             f"{_FIELD_EXAMPLE[name]}")
        return value

    @field_validator("rate_rps", "concurrency")
    @classmethod
    def _check_ladder_order(cls, value: Any) -> Any:
        if isinstance(value, list):
            values = list(value)
            if any(b <= a for a, b in zip(values, values[1:], strict=False)):
                raise ValueError(f"a ladder climbs: the values must rise strictly, got "
                                 f"{values!r}; fix: list each once, lowest first, e.g. "
                                 f"{sorted(set(values))!r}")
        return value

    @property
    def loads(self) -> list[float]:
        """The offered loads the workload names, lowest first: its rate_rps (open loop) or
        concurrency, one value or a ladder's list; empty for a trace (it names no rate)."""
        value = self.rate_rps if self.open_loop else self.concurrency
        return [] if value is None else [float(v) for v in _as_list(value)]

    @model_validator(mode="after")
    def _check_arrival_fields(self) -> WorkloadSpec:
        needed = ARRIVAL_FIELDS[self.arrival]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"arrival {self.arrival.value!r} needs {name}; fix: add e.g. "
                                 f'"{name}": {_FIELD_EXAMPLE[name]}')
        for name in _FIELD_EXAMPLE:
            value = getattr(self, name)
            if name not in needed and value is not None:
                users = ", ".join(repr(a.value) for a, fs in ARRIVAL_FIELDS.items() if name in fs)
                raise ValueError(f"{name} {value!r} is only for arrival {users}; fix: remove it "
                                 "or set arrival to " + ("that" if "," not in users else
                                                         "one of those"))
        if isinstance(self.rate_rps, list) and self.arrival not in LADDER_ARRIVALS:
            steady = ", ".join(repr(a.value) for a in LADDER_ARRIVALS if a is not
                               Arrival.CLOSED_LOOP)
            raise ValueError(f"rate_rps {self.rate_rps!r}: a list of rates (a ladder) needs a "
                             f"steady arrival process ({steady}), not {self.arrival.value!r}; "
                             "fix: give one rate, or change the arrival")
        if self.peak_rate_rps is not None and self.rate_rps is not None \
                and self.arrival is Arrival.SPIKE and self.peak_rate_rps < self.rate_rps:
            raise ValueError(f"peak_rate_rps {self.peak_rate_rps!r} is below rate_rps "
                             f"{self.rate_rps!r}; fix: a spike's peak must be >= the base rate")
        return self


class LadderMode(StrEnum):
    """How each family's offered loads are chosen (see inferbench/load/ladder.py)."""

    SINGLE = "single"
    LIST = "list"
    SEARCH = "search"


class LadderSpec(_Strict):
    """The load ladder of each family (platform x server configuration x batch size): the
    offered loads it measures one after another, each a stored point (a rung), all on one
    server start. A rung holds when no request failed, the server achieved >= 95 % of the
    rate sent (open loop) and the SLO percentile is within the SLO."""

    mode: LadderMode | None = Field(
        None, description="single: one point at workload.rate_rps (or concurrency). list: "
        "each value of a list in workload.rate_rps (or concurrency), lowest first. search: "
        "the highest load within the SLO, from workload.rate_rps (or concurrency) up by "
        "`growth` per rung until a rung fails (down, if the first already fails), then "
        "bisecting to `precision_pct`. Default: list when the workload gives a list, else "
        "single.")
    growth: float = Field(2.0, gt=1, le=16, description="search: factor between the loads "
                          "of successive rungs while climbing (or descending).")
    precision_pct: float = Field(
        5.0, ge=0.1, le=100, description="search: bisect until the lowest load that failed "
        "is within this many percent above the highest that held.")
    max_rungs: int = Field(12, ge=1, le=100, description="Cap on the rungs of one family; a "
                           "search stopped by it reports its bracket as a bound.")
    max_family_s: float = Field(
        600.0, gt=0, le=86_400, description="Cap on one family's time, seconds: a rung "
        "starts only if the time so far plus the longest rung so far fits; a search stopped "
        "by it reports its bracket as a bound.")
    settle_s: float = Field(
        1.0, ge=0, le=600, description="Warm-up at each later rung's own load before it is "
        "measured (a family's first rung gets warmup_s), so the server's queue is that "
        "load's, not the previous rung's.")
    stop_after_failure: bool = Field(
        True, description="list: stop at the first rung that does not hold (higher loads "
        "only fail worse, each taking up to max_duration_s); false runs every listed load.")
    predict: bool | None = Field(
        None, description="Profile each family before its ladder (closed loop, 1..c+1 "
        "requests in flight, c = server.instance_count, `profile_s` each), predict its "
        "latency under Poisson load with a queueing model, store the prediction with every "
        "rung, and start a search just below the predicted SLO crossing (then confirm "
        "around it) instead of at workload.rate_rps. Default: on for a search with Poisson "
        "arrivals, off otherwise; needs Poisson arrivals.")
    profile_s: float = Field(2.0, gt=0, le=600, description="Measured seconds of each "
                             "profiling level (see `predict`).")


class SloSpec(_Strict):
    """The service-level objective a configuration must meet."""

    percentile: float = Field(
        99.0, gt=0, lt=100, description="Latency percentile the SLO is on, e.g. 99 for p99."
    )
    latency_ms: float = Field(gt=0, description="Upper bound for that percentile, milliseconds.")


class ResourceSpec(_Strict):
    """Limits of the containers a benchmark runs in (docker runtime; the local runtime runs
    plain processes and ignores them), and the CPUs the server is kept on (both runtimes)."""

    cpus: float | None = Field(None, gt=0, le=1024, description="CPUs for each serving "
                               "container (a hard limit); stage containers get it as a share.")
    memory_gb: float | None = Field(None, gt=0, le=4096, description="Memory limit of each "
                                    "container, GiB.")
    server_cpus: str | None = Field(
        None, description="CPUs the server runs on, as Linux lists them (\"1\", \"2-5\", "
        "\"0,2-3\"); the load generator then runs on the worker's other CPUs, so the two "
        "never take turns on a core. Default: both run anywhere.")

    @field_validator("server_cpus")
    @classmethod
    def _check_cpu_list(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cpu_list(value)  # its ValueError names the value and the fix
        return value

MAX_QUEUE_DELAY_US = 10_000_000  # 10 s: beyond any sensible batching window
MAX_INSTANCE_COUNT = 64


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


class ServerSpec(_Strict):
    """Server-side batching and instances. A list in a field sweeps it: every combination
    of the listed values is one server configuration, benchmarked one after the other."""

    dynamic_batching: bool | list[bool] = Field(
        False, description="Let the server merge concurrent requests into one batch; "
        "[false, true] compares both.")
    max_queue_delay_us: int | list[int] = Field(
        0, description="Dynamic batching only: how long the server may hold a request to "
        "fill a batch, microseconds; a list sweeps it, e.g. [0, 500, 2000].")
    preferred_batch_sizes: list[int] | list[list[int]] = Field(
        default_factory=list, description="Dynamic batching only (Triton): batch sizes the "
        "batcher aims for, e.g. [4, 8]; a list of lists sweeps them, e.g. [[], [4, 8]].")
    instance_count: int | list[int] = Field(
        1, description="Model instances (inference workers) serving in parallel; a list "
        "sweeps it, e.g. [1, 2].")
    max_batch_size: int | None = Field(
        None, ge=1, le=4096, description="Largest batch the server runs: Triton's "
        "max_batch_size and the batcher's cap (rows). Default: the largest of batch_sizes; "
        "raise it so dynamic batching can merge requests, e.g. 8 with batch_sizes [1].")
    openvino_precision: Literal["f32", "bf16"] = Field(
        "f32", description="OpenVINO only: the CPU plugin's inference precision. f32 gives "
        "the other platforms' outputs; bf16 (fast on CPUs with AMX / AVX-512 BF16) trades "
        "accuracy for speed, so its outputs differ beyond the conversion tolerance.")
    max_configs: int = Field(
        16, ge=1, le=1024, description="Cap on the number of server configurations the "
        "lists above may expand to (each one starts a server and runs every batch size).")

    @field_validator("dynamic_batching", "max_queue_delay_us", "instance_count",
                     "preferred_batch_sizes")
    @classmethod
    def _check_values(cls, value: Any, info) -> Any:
        values = _as_list(value)
        if isinstance(value, list) and not values and info.field_name != "preferred_batch_sizes":
            raise ValueError("an empty list sweeps nothing; fix: give at least one value")
        name = info.field_name
        if name == "preferred_batch_sizes":
            # A flat list is one setting; a list of lists is a sweep over settings.
            settings = values if values and isinstance(values[0], list) else [values]
            for sizes in settings:
                if any(b < 1 for b in sizes) or len(set(sizes)) != len(sizes):
                    raise ValueError(f"{sizes!r}: preferred batch sizes must be >= 1 and "
                                     "distinct; fix: list each size once, e.g. [4, 8]")
            values = [tuple(sorted(s)) for s in settings]
        if name == "max_queue_delay_us" and any(
                not 0 <= v <= MAX_QUEUE_DELAY_US for v in values):
            raise ValueError(f"each delay must be 0..{MAX_QUEUE_DELAY_US} microseconds; "
                             "fix: e.g. 500 for half a millisecond")
        if name == "instance_count" and any(not 1 <= v <= MAX_INSTANCE_COUNT for v in values):
            raise ValueError(f"each instance count must be 1..{MAX_INSTANCE_COUNT}")
        if len(set(values)) != len(values):
            raise ValueError("a value is listed twice; fix: list each once")
        return value

    @model_validator(mode="after")
    def _check_batching_knobs(self) -> ServerSpec:
        if True not in _as_list(self.dynamic_batching):
            knobs = [f"max_queue_delay_us {self.max_queue_delay_us!r}"
                     if _as_list(self.max_queue_delay_us) != [0] else "",
                     f"preferred_batch_sizes {self.preferred_batch_sizes!r}"
                     if self.preferred_batch_sizes else ""]
            knobs = [k for k in knobs if k]
            if knobs:
                raise ValueError(
                    f"{' and '.join(knobs)} only apply with dynamic batching, which is off; "
                    "fix: set dynamic_batching to true (or [false, true] to compare)")
        n = len(self.grid())
        if n > self.max_configs:
            raise ValueError(
                f"the lists expand to {n} server configurations, more than max_configs "
                f"{self.max_configs}; fix: sweep fewer values, or raise server.max_configs "
                f"to {n} if you mean it (each configuration runs every batch size)")
        return self

    def grid(self) -> list[tuple[bool, int, tuple[int, ...], int]]:
        """Every combination as (dynamic_batching, max_queue_delay_us, preferred_batch_sizes,
        instance_count), in the order the lists give. Without dynamic batching the delay and
        preferred sizes mean nothing, so such combinations collapse into one."""
        prefs = self.preferred_batch_sizes
        pref_settings = prefs if prefs and isinstance(prefs[0], list) else [prefs]
        out: list[tuple[bool, int, tuple[int, ...], int]] = []
        for batching in _as_list(self.dynamic_batching):
            for delay in _as_list(self.max_queue_delay_us):
                for sizes in pref_settings:
                    for instances in _as_list(self.instance_count):
                        config = ((True, delay, tuple(sorted(sizes)), instances) if batching
                                  else (False, 0, (), instances))
                        if config not in out:
                            out.append(config)
        return out


class NetworkSpec(_Strict):
    """An emulated link between the load generator and the server (network/link.py)."""

    delay_ms: float = Field(ge=0, le=10_000, description="One-way delay each way, ms (the "
                            "round trip is twice this).")
    jitter_ms: float = Field(0.0, ge=0, le=10_000, description="Each chunk's delay varies "
                             "uniformly by +- this, ms; bytes stay in order.")
    bandwidth_mbps: float = Field(gt=0, le=100_000, description="Downlink (server to client) "
                                  "application throughput, Mbit/s.")
    uplink_mbps: float | None = Field(None, gt=0, le=100_000, description="Uplink (client "
                                      "to server) throughput, Mbit/s; default: bandwidth_mbps.")
    loss_pct: float = Field(0.0, ge=0, le=100, description="Packet loss: not emulated (a relay "
                            "above TCP cannot drop a segment); only 0 is accepted.")

    @model_validator(mode="after")
    def _check_loss(self) -> NetworkSpec:
        if self.loss_pct:
            raise ValueError(
                f"network.loss_pct {self.loss_pct!r} cannot be emulated: the link is a relay "
                "above TCP (network/link.py), which cannot drop segments for TCP to "
                "retransmit; fix: remove loss_pct (or set it to 0)")
        if self.jitter_ms > self.delay_ms:
            raise ValueError(f"network.jitter_ms {self.jitter_ms!r} is above delay_ms "
                             f"{self.delay_ms!r}: a delay cannot go below zero; fix: lower "
                             "jitter_ms to at most delay_ms")
        return self


class ProcessingSide(StrEnum):
    """Where a pre- or post-processing step runs."""

    NONE = "none"      # not at all: the request carries the model's tensors, the answer its scores
    CLIENT = "client"  # on each client device, before sending / after the answer
    SERVER = "server"  # in the server, before / after inference


class ImageInputsSpec(_Strict):
    """The JPEGs a client sends (seeded, made here)."""

    width: int = Field(640, ge=8, le=8192, description="Width of each JPEG, pixels.")
    height: int = Field(480, ge=8, le=8192, description="Height of each JPEG, pixels.")
    quality: int = Field(85, ge=10, le=100, description="JPEG quality.")


class TextInputsSpec(_Strict):
    """The texts a client sends (seeded sentences of made-up words)."""

    words_min: int = Field(20, ge=1, le=10_000, description="Fewest words in a text.")
    words_max: int = Field(120, ge=1, le=10_000, description="Most words in a text.")

    @model_validator(mode="after")
    def _check_order(self) -> TextInputsSpec:
        if self.words_min > self.words_max:
            raise ValueError(f"pipeline.text.words_min {self.words_min} is above words_max "
                             f"{self.words_max}; fix: swap them")
        return self


class PipelineSpec(_Strict):
    """What requests go through around the model: images decoded and resized or text
    tokenised before it, top-k labels after it; on the client or in the server."""

    preprocess: ProcessingSide = Field(
        ProcessingSide.NONE, description="Where images are decoded / text is tokenised: "
        "none (requests carry tensors), client or server.")
    postprocess: ProcessingSide = Field(
        ProcessingSide.NONE, description="Where the scores become top-k labels: none, "
        "client or server.")
    top_k: int = Field(5, ge=1, le=1000, description="Labels in a post-processed answer.")
    image: ImageInputsSpec = Field(default_factory=ImageInputsSpec,
                                   description="Image models: the JPEGs sent.")
    text: TextInputsSpec = Field(default_factory=TextInputsSpec,
                                 description="Text models (bert_base): the texts sent.")

    @property
    def on_server(self) -> bool:
        return ProcessingSide.SERVER in (self.preprocess, self.postprocess)

    @property
    def active(self) -> bool:
        return (self.preprocess, self.postprocess) != (ProcessingSide.NONE, ProcessingSide.NONE)


# The named link profiles, as the form's choices.
NetworkName = Literal.__getitem__(tuple(PROFILES))


def _network_field(value: Any) -> Any:
    """`network` is a named profile (checked against the profiles) or a NetworkSpec's
    figures; validated here as one or the other, so an error names that one's problem."""
    if value is None or isinstance(value, NetworkSpec):
        return value
    if isinstance(value, str):
        if value not in PROFILES:
            raise ValueError(f"network {value!r} is not a named profile; fix: use one of "
                             f"{sorted(PROFILES)!r}, or give the link's figures, e.g. "
                             '{"delay_ms": 20, "bandwidth_mbps": 50}')
        return value
    if not isinstance(value, dict):
        raise ValueError("network must be a profile name or an object of delay_ms, jitter_ms, "
                         "bandwidth_mbps, uplink_mbps; fix: e.g. \"4g\"")
    try:
        return NetworkSpec.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"network.{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            if e["loc"] else e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ValueError(problems) from None


class BenchmarkSpec(_Strict):
    """One benchmark: a model, its formats, the platforms serving it, and the load."""

    name: str = Field(
        "benchmark", min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$",
        description="A label for this benchmark (letters, digits, _ . -).",
    )
    model: ModelSpec = Field(description="The model: the canonical generator's, a well-known "
                             "architecture, or your own model file.")
    formats: list[ModelFormat] = Field(
        default_factory=lambda: [ModelFormat.ONNX, ModelFormat.TORCHSCRIPT], min_length=1,
        description="Formats to convert to; each is checked against the original's outputs.",
    )
    platforms: list[Platform] = Field(
        min_length=1, description="Serving platforms to benchmark, one after the other."
    )
    batch_sizes: list[int] = Field(
        default_factory=lambda: [1], min_length=1,
        description="Batch sizes; each is a separate measurement point on every platform.",
    )
    workload: WorkloadSpec = Field(description="The load: closed-loop or open-loop Poisson.")
    warmup_s: float = Field(3.0, ge=0, le=600, description="Warm-up load before each point "
                            "(not counted).")
    min_duration_s: float = Field(10.0, gt=0, le=MAX_POINT_S,
                                  description="A point runs at least this long.")
    min_requests: int = Field(100, ge=1, le=10_000_000, description="A point completes at "
                              "least this many requests.")
    max_duration_s: float = Field(60.0, gt=0, le=MAX_POINT_S, description="Cap on one point; "
                                  "hitting it before both minimums are met makes the point "
                                  "INVALID.")
    stability_windows: int = Field(
        0, ge=0, le=20, description="If > 0, a point also waits until its last this many "
        "measurement windows agree on throughput and p99 (within stability_tolerance_pct or "
        "their sampling noise); not reached by max_duration_s makes it INVALID. 0: off.")
    stability_window_s: float = Field(2.0, gt=0, le=600, description="Length of one measurement "
                                      "window for the stability rule, seconds.")
    stability_tolerance_pct: float = Field(10.0, gt=0, le=100, description="How far apart "
                                           "the windows' throughput and p99 may be, percent.")
    request_timeout_s: float = Field(10.0, gt=0, le=600, description="A request slower "
                                     "than this counts as failed.")
    slo: SloSpec = Field(description="The SLO each configuration is judged against.")
    late_send_threshold_ms: float = Field(
        1.0, gt=0, le=60_000, description="A request sent this much after its scheduled time "
        "counts as a late send (its latency is still timed from the scheduled time).")
    max_late_send_pct: float = Field(
        1.0, ge=0, le=100, description="A point with more late sends than this share is "
        "INVALID: the load generator fell behind. Raise it only on hosts that stall on their "
        "own (the report shows the host's measured stall share beside it).")
    conversion_atol: float = Field(1e-4, ge=0, description="Absolute tolerance when checking a "
                                   "converted model against the original.")
    conversion_rtol: float = Field(1e-3, ge=0, description="Relative tolerance of that check.")
    resources: ResourceSpec = Field(default_factory=ResourceSpec, description="Container "
                                    "resource limits (docker runtime).")
    hardware: str = Field(
        "cpu", pattern=DEVICE_PATTERN,
        description="Where the servers run the model: cpu, gpu (the first GPU) or gpu:<index>. "
        "A platform that cannot run there is refused; one that falls back to the CPU fails "
        "its deployment.")
    sharing: Sharing = Field(
        Sharing.NONE, description="How each server shares its GPU: none (alone) or mps "
        "(an NVIDIA MPS daemon started for the server and stopped with it; local runtime, "
        "GPU hardware, a worker with nvidia-cuda-mps-control).")
    sweep_id: str | None = Field(
        None, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$",
        description="Label grouping the runs of one sweep (set by the nightly sweep; reports "
        "and heat maps group by it).")
    server: ServerSpec = Field(
        default_factory=ServerSpec, description="Server-side batching and instances; a list "
        "in a field sweeps it (the default: one configuration, no dynamic batching, one "
        "instance).")
    network: Annotated[NetworkName | NetworkSpec | None, BeforeValidator(_network_field)] = Field(
        None, description="The link between the load generator and the server: a named "
        "profile (lan, wifi, 4g) or {delay_ms, jitter_ms, bandwidth_mbps, uplink_mbps}; "
        "default: none (the host's loopback).")
    pipeline: PipelineSpec | None = Field(
        None, description="Pre- and post-processing around the model: JPEGs decoded or text "
        "tokenised, top-k labels; on the client or in the server. Default: none (requests "
        "carry the model's tensors).")
    ladder: LadderSpec = Field(
        default_factory=LadderSpec, description="The offered loads measured per platform, "
        "server configuration and batch size: one point (the default), a list, or a search "
        "for the highest load within the SLO (capacity).")

    @model_validator(mode="before")
    @classmethod
    def _file_formats(cls, data: Any) -> Any:
        """A model file is served as given: its formats default to the ones its platforms
        serve (the file's own format must then be the only one; checked below for a path,
        by the generate stage for a registered name, whose file is in the results DB)."""
        model = data.get("model") if isinstance(data, dict) else None
        if (isinstance(model, dict) and (model.get("path") or model.get("registered"))
                and "formats" not in data and isinstance(data.get("platforms"), list)):
            from inferbench.backends import descriptor

            try:
                needed = {descriptor(Platform(p)).model_format.value
                          for p in data["platforms"]}
            except ValueError:  # an unknown platform: its own field's check names it
                return data
            data = {**data, "formats": sorted(needed)}
        return data

    @model_validator(mode="after")
    def _check_cross_fields(self) -> BenchmarkSpec:
        for label, values in (("formats", self.formats), ("platforms", self.platforms),
                              ("batch_sizes", self.batch_sizes)):
            if len(set(values)) != len(values):
                raise ValueError(f"{label} {[getattr(v, 'value', v) for v in values]!r} lists a "
                                 "value twice; fix: list each once")
        if any(b < 1 or b > 4096 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes {self.batch_sizes!r}: each must be 1..4096")
        # The descriptors come from the backend classes: imported on validation, so that
        # importing the spec (every DAG parse does) stays light.
        from inferbench.backends import descriptor, descriptors

        for platform in self.platforms:
            needed = descriptor(platform).model_format
            if needed not in self.formats:
                raise ValueError(
                    f"platform {platform.value!r} serves the {needed.value!r} format, which is "
                    f"not in formats {[f.value for f in self.formats]!r}; fix: add "
                    f"{needed.value!r} to formats"
                )
        if self.model.path is not None:
            why = formats_mismatch("model.path", format_of(self.model.path), self.formats,
                                   self.platforms)
            if why:
                raise ValueError(why)
        if self.model.architecture is not None and ModelFormat.SAVEDMODEL in self.formats:
            raise ValueError(
                f"formats 'savedmodel' is exported by porting the canonical generator's blocks "
                f"to Keras; architecture {self.model.architecture.value!r} has no such port; "
                "fix: remove 'savedmodel' (and tfserving) from the spec")
        kind = device_kind(self.hardware)
        cannot = [p.value for p in self.platforms if kind not in descriptor(p).devices]
        if cannot:
            able = [p.value for p, d in descriptors().items() if kind in d.devices]
            raise ValueError(
                f"hardware {self.hardware!r}: platforms {cannot!r} cannot run a model on the "
                f"{kind.value.upper()} (only {able!r} can); fix: list only those platforms, "
                'or set hardware to "cpu"')
        if self.sharing is Sharing.MPS and kind is not DeviceKind.GPU:
            raise ValueError(
                f"sharing 'mps' shares a GPU between a server's processes, but hardware is "
                f"{self.hardware!r}; fix: set hardware to 'gpu' (or 'gpu:<index>'), or "
                "sharing to 'none'")
        transport = self.workload.transport
        unable = [p.value for p in self.platforms
                  if transport not in descriptor(p).transports]
        if unable:
            able = [p.value for p, d in descriptors().items() if transport in d.transports]
            raise ValueError(
                f"workload.transport {transport.value!r} is not spoken by platforms {unable!r} "
                f"(only by {able!r}); fix: use \"http\" or list only those platforms")
        largest = self.server_max_batch_size
        if largest < max(self.batch_sizes):
            raise ValueError(
                f"server.max_batch_size {largest!r} is below the largest of batch_sizes "
                f"{self.batch_sizes!r}: the server would refuse those requests; fix: raise it "
                f"to at least {max(self.batch_sizes)} or leave it out")
        for config in self.server.grid():
            if any(b > largest for b in config[2]):
                raise ValueError(
                    f"server.preferred_batch_sizes {list(config[2])!r} exceed the server's max "
                    f"batch size {largest} (server.max_batch_size, default max(batch_sizes)); "
                    f"fix: keep each preferred size <= {largest} or raise server.max_batch_size")
        self._check_sequence_length()
        self._check_pipeline()
        if self.server.openvino_precision != "f32" and Platform.OPENVINO not in self.platforms:
            raise ValueError(
                f"server.openvino_precision {self.server.openvino_precision!r} applies to "
                "platform 'openvino' only, which is not in platforms; fix: add \"openvino\" "
                "to platforms or drop server.openvino_precision")
        if self.max_duration_s < self.min_duration_s:
            raise ValueError(f"max_duration_s {self.max_duration_s!r} is below min_duration_s "
                             f"{self.min_duration_s!r}; fix: raise max_duration_s")
        elements = 0 if self.model.is_file else max(self.batch_sizes) * self.model.sample_elements
        if elements > MAX_REQUEST_ELEMENTS:
            raise ValueError(
                f"batch_sizes {self.batch_sizes!r} at model.input_shape "
                f"{self.model.input_shape!r} make requests of {elements} numbers, over the "
                f"limit of {MAX_REQUEST_ELEMENTS}; fix: keep batch size x sample size within "
                f"it (here batch <= {MAX_REQUEST_ELEMENTS // self.model.sample_elements})")
        self._check_ladder()
        planned = self.planned_load_s
        if planned > MAX_PLANNED_S:
            raise ValueError(
                f"this run may load servers for {planned / 3600:.1f} h ({self.families} "
                f"families of platform x server configuration x batch size, each up to "
                f"{planned / self.families:.0f} s), over the limit of "
                f"{MAX_PLANNED_S / 3600:g} h; fix: fewer platforms, server configurations or "
                "batch sizes, a lower max_duration_s or ladder.max_family_s, or several runs")
        return self

    @property
    def families(self) -> int:
        """Ladders the run climbs: platform x server configuration x batch size."""
        return len(self.platforms) * len(self.server.grid()) * len(self.batch_sizes)

    @property
    def planned_load_s(self) -> float:
        """The longest the run may keep servers under load: every family using its whole
        cap (one point: warm-up plus max_duration_s; a ladder: max_family_s, or its rungs
        when they end sooner)."""
        point_s = max(self.warmup_s, self.ladder.settle_s) + self.max_duration_s
        if self.ladder_mode is LadderMode.SINGLE:
            family_s = self.warmup_s + self.max_duration_s
        else:
            family_s = min(self.ladder.max_family_s, self.ladder.max_rungs * point_s)
        return self.families * family_s

    @property
    def sends_free_sequence(self) -> bool:
        """Requests come at several sequence lengths: the exported model and the servers
        take a free sequence axis."""
        lengths = self.workload.sequence_length
        return lengths is not None and lengths.padding is not Padding.MAX

    def _platforms_lacking(self, capability: str) -> tuple[list[str], list[str]]:
        """The spec's platforms whose descriptor lacks `capability` (a PlatformDescriptor
        flag), and every platform that has it, for an error naming both."""
        from inferbench.backends import descriptor, descriptors

        unable = [p.value for p in self.platforms if not getattr(descriptor(p), capability)]
        able = [p.value for p, d in descriptors().items() if getattr(d, capability)]
        return unable, able

    @property
    def pipeline_input(self) -> str | None:
        """What a pre-processing client sends: "image" (a model of one 3-channel float
        input), "text" (bert_base), or None (no pre-processing, or another model)."""
        if self.pipeline is None or self.pipeline.preprocess is ProcessingSide.NONE:
            return None
        if self.model.is_file:
            return None
        if self.model.architecture is not None:
            return "text" if ARCHITECTURES[self.model.architecture.value].text else "image"
        inputs = self.model.generated_inputs
        if len(inputs) == 1 and len(inputs[0].shape) == 3 and inputs[0].shape[0] == 3:
            return "image"
        return None

    def _check_pipeline(self) -> None:
        pipeline = self.pipeline
        if pipeline is None or not pipeline.active:
            return
        if pipeline.preprocess is not ProcessingSide.NONE and self.pipeline_input is None:
            raise ValueError(
                f"pipeline.preprocess {pipeline.preprocess.value!r}: model {self.model.kind!r} "
                "takes neither images (one input of shape [3, H, W]) nor text (bert_base); "
                "fix: set preprocess to \"none\", or benchmark a CNN, resnet50, mobilenet_v2 "
                "or bert_base")
        if self.workload.sequence_length is not None and self.pipeline_input == "text":
            raise ValueError("pipeline.preprocess tokenises texts, whose lengths are their "
                             "own; fix: remove workload.sequence_length")
        if pipeline.on_server:
            unable, able = self._platforms_lacking("server_processing")
            if unable:
                raise ValueError(
                    f"pipeline: pre- or post-processing on the server needs a server that "
                    f"does it, which platforms {unable!r} do not ({able!r} do); fix: "
                    "\"client\" for those platforms, or only those that can")
            if self.workload.transport is Transport.GRPC:
                raise ValueError("pipeline: the servers that pre- and post-process speak HTTP; "
                                 'fix: set workload.transport to "http"')

    def _check_sequence_length(self) -> None:
        lengths = self.workload.sequence_length
        if lengths is None:
            return
        sequence = None if self.model.is_file else self.model.sequence
        if sequence is None:
            raise ValueError(
                f"workload.sequence_length: model {self.model.kind!r} has no sequence axis to "
                "vary; fix: remove sequence_length, or benchmark bert_base, lstm or attention")
        for name, value in (("length", lengths.length), ("max", lengths.max),
                            ("min", lengths.min), ("buckets", max(lengths.buckets or [0]))):
            if value is not None and value > sequence:
                raise ValueError(
                    f"workload.sequence_length.{name} {value} is longer than the model's "
                    f"sequence ({sequence}, model.input_shape[0]); fix: at most {sequence}, "
                    "or a longer input_shape")
        if lengths.padding is not Padding.MAX:
            fixed, able = self._platforms_lacking("free_sequence")
            if fixed:
                raise ValueError(
                    f"workload.sequence_length.padding {lengths.padding.value!r} sends "
                    f"sequences of several lengths, which platforms {fixed!r} cannot take "
                    f"(their servers declare one shape; {able!r} can); fix: padding \"max\" "
                    "or only those platforms")

    def _check_ladder(self) -> None:
        w, ladder = self.workload, self.ladder
        field = "rate_rps" if w.open_loop else "concurrency"
        value = getattr(w, field)
        listed = isinstance(value, list)
        mode = self.ladder_mode
        if mode is not LadderMode.SINGLE and w.arrival not in LADDER_ARRIVALS:
            raise ValueError(
                f"ladder.mode {mode.value!r} varies one steady rate or concurrency, which "
                f"arrival {w.arrival.value!r} does not have; fix: use one of "
                f"{[a.value for a in LADDER_ARRIVALS]!r}, or drop ladder.mode")
        if mode is LadderMode.SINGLE and listed:
            raise ValueError(
                f"ladder.mode 'single' runs one load, but workload.{field} is a list "
                f"{value!r}; fix: drop ladder.mode (a list runs as a list) or give one value")
        if mode is LadderMode.LIST and not listed:
            raise ValueError(
                f"ladder.mode 'list' needs a list in workload.{field}, got {value!r}; fix: "
                f"e.g. \"{field}\": [{value:g}, {value * 2:g}, {value * 4:g}]")
        if mode is LadderMode.SEARCH and listed:
            raise ValueError(
                f"ladder.mode 'search' starts from one load, but workload.{field} is a list "
                f"{value!r}; fix: give the load to start from, e.g. \"{field}\": "
                f"{value[0]!r}, or drop ladder.mode to run the list")
        if listed and len(value) > ladder.max_rungs:
            raise ValueError(
                f"workload.{field} lists {len(value)} loads but ladder.max_rungs is "
                f"{ladder.max_rungs}; fix: raise ladder.max_rungs to {len(value)} or list "
                "fewer loads")
        first_rung_s = self.warmup_s + self.min_duration_s
        if mode is not LadderMode.SINGLE and ladder.max_family_s < first_rung_s:
            raise ValueError(
                f"ladder.max_family_s {ladder.max_family_s!r} is shorter than one rung, "
                f"which takes at least warmup_s + min_duration_s = {first_rung_s:g} s; "
                f"fix: raise ladder.max_family_s (e.g. to {10 * first_rung_s:g})")
        if ladder.predict and w.arrival is not Arrival.POISSON:
            raise ValueError(
                f"ladder.predict is true, but the queueing model predicts Poisson arrivals "
                f"and workload.arrival is {w.arrival.value!r}; fix: set workload.arrival to "
                "\"poisson\", or drop ladder.predict")

    @property
    def predicts(self) -> bool:
        """Whether each family is profiled and predicted before its ladder (ladder.predict,
        or by default a search with Poisson arrivals)."""
        if self.ladder.predict is not None:
            return self.ladder.predict
        return self.ladder_mode is LadderMode.SEARCH and \
            self.workload.arrival is Arrival.POISSON

    @property
    def ladder_mode(self) -> LadderMode:
        """ladder.mode, or what the workload implies: list for a list, else single."""
        if self.ladder.mode is not None:
            return self.ladder.mode
        value = self.workload.rate_rps if self.workload.open_loop else self.workload.concurrency
        return LadderMode.LIST if isinstance(value, list) else LadderMode.SINGLE

    @property
    def server_max_batch_size(self) -> int:
        """The largest batch the server runs (ServeContext.max_batch_size)."""
        return self.server.max_batch_size or max(self.batch_sizes)

    def spec_hash(self) -> str:
        """A stable hash of the canonical JSON, stored with every result for provenance."""
        data = self.model_dump(mode="json")
        if self.server == ServerSpec():  # specs from before the server section keep their hash
            del data["server"]
        if self.workload.transport is Transport.HTTP:  # likewise specs from before transport
            del data["workload"]["transport"]
        if self.workload.sequence_length is None:  # and before variable lengths
            del data["workload"]["sequence_length"]
        if "server" in data and self.server.openvino_precision == "f32":  # and precision
            del data["server"]["openvino_precision"]
        if self.ladder == LadderSpec():  # and specs from before the ladder
            del data["ladder"]
        if self.hardware == "cpu":  # and specs from before hardware
            del data["hardware"]
        if self.model.architecture is None:  # and generator models from before architectures
            del data["model"]["architecture"]
        for key in ("path", "registered", "inputs", "input_shape"):  # and before model files
            if data["model"][key] is None:
                del data["model"][key]
        if self.sharing is Sharing.NONE:  # and before sharing
            del data["sharing"]
        if self.network is None:  # and before network conditions
            del data["network"]
        if self.pipeline is None:  # and before pre- and post-processing
            del data["pipeline"]
        if self.resources.server_cpus is None:  # and before pinned CPUs
            del data["resources"]["server_cpus"]
        canonical = json.dumps(data, sort_keys=True,
                               separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _format_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(spec)"
    if err["type"] == "extra_forbidden":
        parent = err["loc"][:-1]
        allowed = sorted(_fields_at(parent))
        return (f"unknown key {str(err['loc'][-1])!r} in {'.'.join(map(str, parent)) or 'spec'}; "
                f"allowed keys: {', '.join(allowed)}; fix: remove or rename it")
    if err["type"] == "missing":
        return f"field `{loc}` is required; fix: add it (see `inferbench schema`)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error" and loc == "(spec)":
        return msg
    return f"field `{loc}`: value {err.get('input')!r} is invalid: {msg}"


def _fields_at(path: tuple) -> list[str]:
    model: type[BaseModel] = BenchmarkSpec
    for part in path:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return list(model.model_fields)


def parse_spec(data: Any, source: str = "spec") -> BenchmarkSpec:
    """Validate raw JSON into a BenchmarkSpec, or raise InferBenchError listing every problem."""
    if not isinstance(data, dict):
        raise InferBenchError(f"{source}: expected a JSON object, got {type(data).__name__}")
    try:
        return BenchmarkSpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"- {_format_error(e)}" for e in exc.errors()]
        raise InferBenchError(f"{source} is not a valid benchmark spec:\n" + "\n".join(lines)) \
            from None


def load_spec(path: str | Path) -> BenchmarkSpec:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InferBenchError(f"spec file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise InferBenchError(f"{path}: not valid JSON: {exc}") from None
    return parse_spec(data, source=str(path))


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace pydantic's $ref/$defs by the definitions themselves: Airflow validates each
    Param with its own schema, where a $ref to the top-level $defs would not resolve."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline_refs({**target, **rest}, defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def json_schema() -> dict[str, Any]:
    """The spec's JSON schema with every reference inlined."""
    schema = BenchmarkSpec.model_json_schema()
    return _inline_refs(schema, schema.get("$defs", {}))


def example_spec() -> BenchmarkSpec:
    """The demo benchmark: a small residual CNN on both platforms (the trigger form's defaults)."""
    return BenchmarkSpec(
        name="demo-cnn",
        model=ModelSpec(family=ModelFamily.CNN, depth=2, width=16, input_shape=[3, 32, 32]),
        platforms=[Platform.TRITON, Platform.ONNXRUNTIME],
        batch_sizes=[1, 8],
        workload=WorkloadSpec(arrival=Arrival.POISSON, rate_rps=40, seed=1),
        warmup_s=3, min_duration_s=12, min_requests=200, max_duration_s=40,
        slo=SloSpec(percentile=99, latency_ms=50),
        # max_late_send_pct keeps the default (1 %): the real-time issuer meets it beside a
        # server that keeps both cores of a 2-vCPU host busy (benchmarks/loadgen/README.md,
        # section 6). A REST or UI trigger that omits a field gets this example's value.
    )


def spec_from_conf(conf: dict[str, Any], source: str = "DAG-run conf") -> BenchmarkSpec:
    """The spec a benchmark DAG run gets from its conf: the fields it names replace the
    DAG's defaults (the demo spec), as Airflow merges a conf into the DAG's Params."""
    return parse_spec({**example_spec().model_dump(mode="json"), **conf}, source=source)
