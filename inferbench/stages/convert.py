"""convert: export the model to each requested format and check each against the original.

A converted model counts only if it gives the original's outputs within the spec's
tolerance on seeded inputs at the smallest and largest benchmarked batch sizes; the check's
numbers are stored either way, and a failed check fails the stage. A user's model file is
not converted: it is checked to run and answer in shape (see _check_model_file).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TypedDict

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.perfdb import schema, writer
from inferbench.spec import ModelFormat
from inferbench.stages.common import StageContext, write_json

CHECK_SEED = 20_240_601


class Conversion(TypedDict):
    """One format's conversion and check: a row of the conversions table, and an entry of
    `model/conversions.json` (keyed by format), which the serve stage reads."""

    format: str
    artifact_path: str
    tool: str                # exporter and version
    max_abs_diff: float      # largest |converted - original| over the checked batches
    atol: float
    rtol: float
    passed: bool
    duration_s: float        # export time


def _export_onnx(model, example: dict, path: Path, device: str,
                 free_sequence: bool = False) -> str:
    """ONNX with the signature's input names and a free batch dimension on every input
    (and a free sequence axis, the first of a sample, when requests vary in length);
    exported on the CPU whatever the serving device (the graph names none)."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    names, args = list(example), tuple(example.values())
    axes = {0: batch}
    if free_sequence:
        axes[1] = torch.export.Dim("sequence", min=2, max=max(2, args[0].shape[1]))
    try:
        torch.onnx.export(model, args, str(path), dynamo=True, input_names=names,
                          output_names=["output"],
                          dynamic_shapes=tuple(dict(axes) for _ in args), verbose=False)
        return f"torch.onnx dynamo (torch {torch.__version__})"
    except Exception as exc:  # noqa: BLE001 - fall back, and say so in the stored tool name
        warnings.warn(f"dynamo ONNX export failed ({exc!r}); using the TorchScript exporter",
                      stacklevel=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, args, str(path), dynamo=False, input_names=names,
                              output_names=["output"], opset_version=17,
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"}
                                               if free_sequence else {0: "batch"}
                                               for n in names}, "output": {0: "batch"}})
        return f"torch.onnx torchscript (torch {torch.__version__})"


def _export_torchscript(model, example: dict, path: Path, device: str,
                        free_sequence: bool = False) -> str:
    """Traced with the inputs positional, in signature order (the servers call it so), on
    the device it will be served on: a trace keeps the device of the tensors the model makes
    for itself (BERT's attention bias), so BERT traced on the CPU fails on a GPU (seen on an
    H200), and traced there it matches the CPU's answer. A trace follows the sizes it reads
    from its inputs, so a free sequence needs nothing more (the check at a shorter sequence
    is what shows it)."""
    import torch

    from inferbench.servers.runtimes import torch_device

    where = torch_device(device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated upstream but still served
            # torch's own re-trace check compares graphs, which differ between two traces
            # of an attention block by name mangling alone; the check that counts is the
            # convert stage's: outputs against the original's, at every checked shape.
            traced = torch.jit.trace(model.to(where), tuple(t.to(where)
                                                            for t in example.values()),
                                     check_trace=False)
    finally:
        model.to("cpu")  # the other formats and the check's reference run on the CPU
    traced.save(str(path))
    return f"torch.jit.trace on {where} (torch {torch.__version__})"


def run_artifact(fmt: ModelFormat, path: Path, device: str = "cpu"):
    """A function inputs (by name) -> output that runs the converted artifact the way a
    server would (TorchScript on the device it was traced for): the first output, as a
    numpy array."""
    if fmt is ModelFormat.SAVEDMODEL:
        from inferbench.models.tf_port import load_savedmodel

        infer = load_savedmodel(path)
        return lambda feeds: infer(*feeds.values())
    if fmt is ModelFormat.ONNX:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(None, feeds)[0]
    import torch

    from inferbench.servers.runtimes import torch_device

    where = torch_device(device)
    loaded = torch.jit.load(str(path), map_location=where)

    def infer(feeds):
        out = loaded(*(torch.from_numpy(a).to(where) for a in feeds.values()))
        if not isinstance(out, torch.Tensor):
            raise InferBenchError(f"{path.name} returns a {type(out).__name__}, not one tensor; "
                                  "the servers answer with one output tensor; fix: script a "
                                  "wrapper whose forward returns the logits tensor")
        return out.detach().cpu().numpy()

    return infer


def _export_savedmodel(model, example: dict, path: Path, device: str,
                       free_sequence: bool = False) -> str:
    # TensorFlow is imported only here: a run without the savedmodel format never loads it.
    from inferbench.models.tf_port import export_savedmodel

    (single,) = example.values()  # the spec refuses SavedModel for multi-input models
    return export_savedmodel(model, single, path)


# Each format's artifact in the run's model directory, converted or a user's file copied.
ARTIFACT_NAMES = {ModelFormat.ONNX: "model.onnx",
                  ModelFormat.TORCHSCRIPT: "model.torchscript.pt",
                  # A directory: saved_model.pb + variables/ (TF Serving's version directory).
                  ModelFormat.SAVEDMODEL: "savedmodel"}
EXPORTERS = {ModelFormat.ONNX: (_export_onnx, ARTIFACT_NAMES[ModelFormat.ONNX]),
             ModelFormat.TORCHSCRIPT: (_export_torchscript,
                                       ARTIFACT_NAMES[ModelFormat.TORCHSCRIPT]),
             ModelFormat.SAVEDMODEL: (_export_savedmodel, ARTIFACT_NAMES[ModelFormat.SAVEDMODEL])}


def _check_model_file(ctx: StageContext, fmt: ModelFormat) -> tuple[Conversion, list[str]]:
    """A user's model file is served as given: nothing is converted, so the check is that
    the copy the servers load runs at the smallest and largest batch sizes, with one output
    row of num_outputs finite numbers per sample (its agreement with itself is exact)."""
    from inferbench.models.signature import sample_inputs
    from inferbench.stages.common import run_signature

    signature = run_signature(ctx)
    path = ctx.run_dir.model_dir / ARTIFACT_NAMES[fmt]
    infer = run_artifact(fmt, path, ctx.spec.hardware)
    failures = []
    for b in sorted({min(ctx.spec.batch_sizes), max(ctx.spec.batch_sizes)}):
        got = np.asarray(infer(sample_inputs(signature.inputs, b,
                                             np.random.default_rng(CHECK_SEED + b))))
        if got.shape != (b, signature.num_outputs) or not np.all(np.isfinite(got)):
            failures.append(f"{fmt.value}: at batch {b} the file answers shape {got.shape} "
                            f"(expected ({b}, {signature.num_outputs}), all finite)")
    row: Conversion = {
        "format": fmt.value, "artifact_path": str(path),
        "tool": "none: the user's model file, served as given", "max_abs_diff": 0.0,
        "atol": ctx.spec.conversion_atol, "rtol": ctx.spec.conversion_rtol,
        "passed": not failures, "duration_s": 0.0}
    return row, failures


def run(ctx: StageContext) -> dict[str, Conversion]:
    if ctx.spec.model.is_file:
        results, failures = {}, []
        for fmt in ctx.spec.formats:  # the generate stage allowed the file's own only
            results[fmt.value], failed = _check_model_file(ctx, fmt)
            failures += failed
        return _record(ctx, results, failures)
    import torch

    from inferbench.models.generator import build_model, sample_inputs

    model_spec = ctx.spec.model
    model = build_model(model_spec)
    model.load_state_dict(torch.load(ctx.run_dir.model_dir / "model.pt", weights_only=True))
    batch_sizes = sorted({min(ctx.spec.batch_sizes), max(ctx.spec.batch_sizes)})
    inputs = [sample_inputs(model_spec, b, CHECK_SEED + b) for b in batch_sizes]
    free = ctx.spec.sends_free_sequence
    if free:  # requests vary in length: check a shorter sequence too
        short = model_spec.model_copy(update={"input_shape": [
            max(2, model_spec.sequence // 4), *model_spec.input_shape[1:]]})
        inputs.append(sample_inputs(short, batch_sizes[0], CHECK_SEED - 1))
    with torch.no_grad():
        expected = [model(*x.values()).numpy() for x in inputs]
    results: dict[str, Conversion] = {}
    failures: list[str] = []
    for fmt in ctx.spec.formats:
        export, filename = EXPORTERS[fmt]
        path = ctx.run_dir.model_dir / filename
        t0 = time.perf_counter()
        tool = export(model, inputs[0], path, ctx.spec.hardware, free_sequence=free)
        duration = time.perf_counter() - t0
        infer = run_artifact(fmt, path, ctx.spec.hardware)
        diffs, passed = [], True
        for x, ref in zip(inputs, expected, strict=True):
            got = infer({name: t.numpy() for name, t in x.items()})
            diffs.append(float(np.max(np.abs(got - ref))))
            passed &= got.shape == ref.shape and bool(
                np.allclose(got, ref, atol=ctx.spec.conversion_atol, rtol=ctx.spec.conversion_rtol))
        row: Conversion = {
            "format": fmt.value, "artifact_path": str(path), "tool": tool,
            "max_abs_diff": max(diffs), "atol": ctx.spec.conversion_atol,
            "rtol": ctx.spec.conversion_rtol, "passed": passed, "duration_s": duration}
        results[fmt.value] = row
        if not passed:
            failures.append(f"{fmt.value}: max |diff| {max(diffs):.3g} exceeds atol "
                            f"{ctx.spec.conversion_atol} + rtol {ctx.spec.conversion_rtol}")
    return _record(ctx, results, failures)


def _record(ctx: StageContext, results: dict[str, Conversion],
            failures: list[str]) -> dict[str, Conversion]:
    """Store the checks (passed or not), then fail the stage if any failed."""
    with ctx.db.begin() as conn:
        for row in results.values():
            writer.upsert(conn, schema.conversions, {"run_id": ctx.run_id, **row})
    write_json(ctx.run_dir.model_dir / "conversions.json", results)
    if failures:
        raise InferBenchError("converted model(s) do not match the original: "
                              + "; ".join(failures))
    return results
