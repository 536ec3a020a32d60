"""A model the user brings: an ONNX, TorchScript or SavedModel file, served as given.

Its input signature is read from the file (names, element types, which axes are free),
and completed from the spec's `model.inputs` where the file leaves something open: a
TorchScript file keeps its inputs' names but not their types or shapes, and an ONNX or
SavedModel file may leave a sequence axis free. The first axis of every input is the batch.

The frameworks are imported inside the readers: the spec imports this module for the
names below, and every DAG parse imports the spec.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inferbench.budgets import MAX_REQUEST_ELEMENTS
from inferbench.errors import InferBenchError
from inferbench.models.signature import DTYPES, Fill, TensorSpec
from inferbench.platforms import ModelFormat

# How a model file is recognised by its name (a SavedModel is a directory, or its .pb).
MODEL_FILE_SUFFIXES = {ModelFormat.ONNX.value: (".onnx",),
                       ModelFormat.TORCHSCRIPT.value: (".pt", ".pth", ".torchscript")}
SAVEDMODEL_FILE = "saved_model.pb"
# A registered model's name: what a spec's model.registered gives.
REGISTERED_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# A free axis is shown as its name in the file (ONNX dim_param), or as this where unnamed.
FREE_AXIS = "?"


def format_of(path: str | Path) -> ModelFormat | None:
    """The format a model file's name says (None: not one the benchmark serves)."""
    p = Path(path)
    for fmt, suffixes in MODEL_FILE_SUFFIXES.items():
        if p.suffix.lower() in suffixes:
            return ModelFormat(fmt)
    if p.name == SAVEDMODEL_FILE or not p.suffix:
        return ModelFormat.SAVEDMODEL
    return None


def formats_mismatch(field: str, own: ModelFormat, formats: Sequence[ModelFormat],
                     platforms: Sequence[Any]) -> str | None:
    """Why a spec's formats cannot be served from a model file of format `own` (a file is
    served as given, never converted), naming the platforms that want another; None if
    they can."""
    others = [f.value for f in formats if f is not own]
    if not others:
        return None
    from inferbench.backends import descriptor

    serving = [p.value for p in platforms if descriptor(p).model_format is not own]
    return (f"formats {others!r}: {field} is a model file in the {own.value} format, served "
            f"as given (a model file is not converted); fix: list only platforms that serve "
            f"{own.value}" + (f" (not {serving!r})" if serving else "")
            + " and leave formats out")


@dataclass(frozen=True)
class FileInput:
    """One input as the file declares it; None where the file does not say."""

    name: str
    dtype: str | None = None                      # numpy's name
    dims: tuple[int | str, ...] | None = None     # one sample's axes; a str is a free axis


@dataclass(frozen=True)
class FileSignature:
    """What a model file says about its inputs and its (first) output."""

    format: ModelFormat
    inputs: tuple[FileInput, ...]
    output: str | None = None  # the first output's name (a TorchScript file names none)
    batch: int | str | None = None  # the batch axis: free (a str), fixed (an int), unknown

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format.value, "output": self.output, "batch": self.batch,
                "inputs": [{"name": i.name, "dtype": i.dtype,
                            "dims": list(i.dims) if i.dims is not None else None}
                           for i in self.inputs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileSignature:
        return cls(ModelFormat(data["format"]),
                   tuple(FileInput(i["name"], i["dtype"],
                                   tuple(i["dims"]) if i["dims"] is not None else None)
                         for i in data["inputs"]),
                   data.get("output"), data.get("batch"))


def _numpy_name(dtype: Any) -> str:
    import numpy as np

    return np.dtype(dtype).name


def _onnx_signature(path: Path, field: str) -> FileSignature:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - any parse or check failure: the file is bad
        raise InferBenchError(f"{field} {str(path)!r} is not a valid ONNX model "
                              f"({type(exc).__name__}: {str(exc)[:200]}); fix: give a file "
                              "saved by onnx.save or torch.onnx.export") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise InferBenchError(f"{field} {str(path)!r} keeps its weights in external data "
                              "files; fix: save it as one file (onnx.save with "
                              "save_as_external_data=False; under 2 GB)")
    weights = {t.name for t in model.graph.initializer}
    inputs, batch = [], set()
    for value in model.graph.input:
        if value.name in weights:  # older exporters list initializers as inputs
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else FREE_AXIS)
                for d in tensor.shape.dim]
        if not dims:
            raise InferBenchError(f"{field} {str(path)!r}: input {value.name!r} is a scalar "
                                  "(no batch axis); fix: export with a batch axis first")
        batch.add(dims[0])
        elem = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        inputs.append(FileInput(value.name, _numpy_name(elem), tuple(dims[1:])))
    if not model.graph.output:
        raise InferBenchError(f"{field} {str(path)!r} has no output; fix: export its outputs")
    return FileSignature(ModelFormat.ONNX, tuple(inputs), model.graph.output[0].name,
                         batch.pop() if len(batch) == 1 else None)


def _torchscript_signature(path: Path, field: str) -> FileSignature:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any load failure: the file is bad
        raise InferBenchError(f"{field} {str(path)!r} is not a TorchScript module "
                              f"({type(exc).__name__}: {str(exc)[:200]}); fix: give a file "
                              "saved by torch.jit.save (a state dict or a pickled nn.Module "
                              "cannot be served as given)") from None
    args = module.forward.schema.arguments[1:]  # the first is the module itself
    if not args:
        raise InferBenchError(f"{field} {str(path)!r}: its forward takes no input; fix: "
                              "give a model whose forward takes tensors")
    return FileSignature(ModelFormat.TORCHSCRIPT, tuple(FileInput(a.name) for a in args))


def _savedmodel_signature(path: Path, field: str) -> FileSignature:
    import tensorflow as tf

    directory = path.parent if path.name == SAVEDMODEL_FILE else path
    try:
        loaded = tf.saved_model.load(str(directory))
        serving = loaded.signatures["serving_default"]
    except Exception as exc:  # noqa: BLE001 - any load failure: the directory is bad
        raise InferBenchError(f"{field} {str(path)!r} is not a SavedModel with a "
                              f"serving_default signature ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); fix: give a directory saved by "
                              "tf.saved_model.save with a serving signature") from None
    specs = serving.structured_input_signature[1]
    inputs, batch = [], set()
    for name, spec in sorted(specs.items()):
        dims = [FREE_AXIS if d is None else int(d) for d in spec.shape.as_list()]
        batch.add(dims[0] if dims else None)
        inputs.append(FileInput(name, spec.dtype.as_numpy_dtype.__name__, tuple(dims[1:])))
    outputs = sorted(serving.structured_outputs)
    return FileSignature(ModelFormat.SAVEDMODEL, tuple(inputs), outputs[0] if outputs else None,
                         batch.pop() if len(batch) == 1 else None)


SIGNATURE_READERS = {ModelFormat.ONNX: _onnx_signature,
                     ModelFormat.TORCHSCRIPT: _torchscript_signature,
                     ModelFormat.SAVEDMODEL: _savedmodel_signature}


def read_signature(path: Path, field: str) -> FileSignature:
    """The file's signature; InferBenchError naming `field`, the path and the fix when it is
    missing, of an unknown kind, or not a model of its kind."""
    fmt = format_of(path)
    if fmt is None:
        raise InferBenchError(f"{field} {str(path)!r}: not a model file the benchmark serves; "
                              "fix: an ONNX (.onnx), TorchScript (.pt) or SavedModel file")
    if not path.exists():
        raise InferBenchError(f"{field} {str(path)!r} does not exist; fix: give the path of "
                              "an existing model file")
    is_dir_format = fmt is ModelFormat.SAVEDMODEL and path.name != SAVEDMODEL_FILE
    if path.is_dir() != is_dir_format:
        what = "a directory" if path.is_dir() else "a file"
        wanted = "a directory" if is_dir_format else "one file"
        raise InferBenchError(f"{field} {str(path)!r} is {what}; a {fmt.value} model is "
                              f"{wanted}; fix: give the model file (.onnx, .pt) or a SavedModel "
                              "directory")
    return SIGNATURE_READERS[fmt](path, field)


class OpenInput(Protocol):
    """The spec's word on one input (spec.InputSpec)."""

    name: str
    dtype: Any
    shape: list[int] | None
    vocab: int | None


def complete_inputs(sig: FileSignature, given: Sequence[OpenInput] | None,
                    batch_sizes: Sequence[int], field: str = "model.inputs"
                    ) -> tuple[TensorSpec, ...]:
    """The input signature the benchmark sends: the file's, completed by the spec's
    `model.inputs`; InferBenchError naming the input and the fix where something is left
    open, contradicted, or not sendable."""
    by_name = {g.name: g for g in given or ()}
    unknown = sorted(set(by_name) - {i.name for i in sig.inputs})
    if unknown:
        raise InferBenchError(f"{field} names {unknown!r}, which the model file does not take "
                              f"(its inputs: {[i.name for i in sig.inputs]!r}); fix: use its "
                              "names")
    if isinstance(sig.batch, int) and set(batch_sizes) != {sig.batch}:
        raise InferBenchError(f"batch_sizes {list(batch_sizes)!r}: the model file's batch axis "
                              f"is fixed at {sig.batch}; fix: batch_sizes [{sig.batch}], or "
                              "export the model with a free batch axis")
    out = []
    for fi in sig.inputs:
        spec = by_name.get(fi.name)
        where = f"{field} entry {fi.name!r}"
        dtype = getattr(spec.dtype, "value", spec.dtype) if spec and spec.dtype else None
        if fi.dtype is not None and dtype is not None and dtype != fi.dtype:
            raise InferBenchError(f"{where}: dtype {dtype!r}, but the file's input is "
                                  f"{fi.dtype}; fix: leave dtype out")
        dtype = dtype or fi.dtype
        if dtype is None:
            raise InferBenchError(f"{where} is missing: the file does not record input "
                                  f"{fi.name!r}'s element type and shape; fix: add "
                                  f'{{"name": "{fi.name}", "dtype": "float32", "shape": [...]}}'
                                  " to model.inputs")
        if dtype not in DTYPES:
            raise InferBenchError(f"input {fi.name!r} of the model file is {dtype}, which the "
                                  f"benchmark does not send; fix: export it taking one of "
                                  f"{list(DTYPES)}")
        shape = _complete_shape(fi, spec.shape if spec else None, where)
        fill, vocab = Fill.NORMAL, 0
        if dtype == "int64":
            if "mask" in fi.name.lower():
                fill = Fill.MASK
            elif spec is not None and spec.vocab:
                fill, vocab = Fill.TOKENS, spec.vocab
            else:
                raise InferBenchError(f"{where}: input {fi.name!r} is int64 token ids; the "
                                      "benchmark draws them from [0, vocab); fix: give "
                                      f'{{"name": "{fi.name}", "vocab": N}} in model.inputs '
                                      "(N: the model's vocabulary size)")
        out.append(TensorSpec(fi.name, dtype, shape, fill, vocab))
    elements = max(batch_sizes) * sum(math.prod(t.shape) for t in out)
    if elements > MAX_REQUEST_ELEMENTS:
        raise InferBenchError(f"batch_sizes {list(batch_sizes)!r}: the model file's inputs make "
                              f"requests of {elements} numbers, over the limit of "
                              f"{MAX_REQUEST_ELEMENTS}; fix: smaller batch sizes or shapes")
    return tuple(out)


def _complete_shape(fi: FileInput, given: Sequence[int] | None, where: str) -> tuple[int, ...]:
    if (fi.dims is None or any(isinstance(d, str) for d in fi.dims)) and given is None:
        shown = "unknown" if fi.dims is None else list(fi.dims)
        raise InferBenchError(f"{where}: the shape of one sample of input {fi.name!r} is "
                              f"open in the file ({shown}); fix: give its \"shape\" in "
                              "model.inputs (without the batch axis)")
    if given is None:
        return tuple(int(d) for d in fi.dims)
    if fi.dims is not None and (len(given) != len(fi.dims) or any(
            isinstance(d, int) and d != g for d, g in zip(fi.dims, given, strict=True))):
        raise InferBenchError(f"{where}: shape {list(given)!r} does not fit the file's "
                              f"{list(fi.dims)!r} (without the batch axis); fix: keep its "
                              "fixed axes and fill only the free ones")
    if any(g < 1 for g in given):
        raise InferBenchError(f"{where}: shape {list(given)!r}: every axis must be >= 1")
    return tuple(int(g) for g in given)


def hash_model(path: Path) -> str:
    """sha256 of a model file, or of a SavedModel directory's files (relative names and
    contents, in name order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def copy_onnx_naming_output(source: Path, target: Path, name: str) -> str | None:
    """Copy an ONNX model with its first output named `name` (the servers' configs and the
    response parsers look for it); the output's old name when it had another, else None."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    old = model.graph.output[0].name
    if old == name:
        target.write_bytes(source.read_bytes())
        return None
    taken = {v for node in model.graph.node for v in (*node.input, *node.output)}
    if name in taken or name in {i.name for i in model.graph.input}:
        raise InferBenchError(f"the model file uses the name {name!r} inside its graph, so its "
                              f"first output ({old!r}) cannot take it; fix: rename that tensor")
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    model.graph.output[0].name = name
    onnx.save(model, str(target))
    return old


def count_parameters(fmt: ModelFormat, path: Path) -> int:
    """Numbers in a model file's weights (ONNX initializers, TorchScript parameters and
    buffers, SavedModel variables)."""
    if fmt is ModelFormat.ONNX:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return sum(math.prod(t.dims) for t in model.graph.initializer)
    if fmt is ModelFormat.TORCHSCRIPT:
        import torch

        module = torch.jit.load(str(path), map_location="cpu")
        return sum(t.numel() for t in (*module.parameters(), *module.buffers()))
    import tensorflow as tf

    # The variables' checkpoint lists every saved variable with its shape (a loaded object
    # exposes them only if its class tracked them as such).
    directory = path.parent if path.name == SAVEDMODEL_FILE else path
    shapes = tf.train.load_checkpoint(str(directory / "variables" / "variables")
                                      ).get_variable_to_shape_map()
    return sum(math.prod(shape) for key, shape in shapes.items()
               if key.endswith("VARIABLE_VALUE"))
