"""The generate stage's half for a user's model file (a path, or a registered name).

The file is found (inside the data directories, or in the registry with its hash checked),
its signature read and completed by the spec's model.inputs, and it is copied into the run
directory under the name the servers load; then it is run once on a batch of payload to
learn its output size and to fail here, naming the problem, if it cannot serve. The file's
hash as given goes to the models table and model.json (with what it said about itself).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.models import registry
from inferbench.models.signature import TensorSpec, sample_inputs
from inferbench.models.user_model import (
    SAVEDMODEL_FILE,
    FileSignature,
    complete_inputs,
    copy_onnx_naming_output,
    count_parameters,
    formats_mismatch,
    hash_model,
    read_signature,
)
from inferbench.platforms import ModelFormat
from inferbench.stages.common import RunSignature, StageContext
from inferbench.stages.convert import ARTIFACT_NAMES, CHECK_SEED, run_artifact
from inferbench.user_files import data_dirs, resolve_in


def _find(ctx: StageContext) -> tuple[Path, FileSignature, str]:
    """The model file, its signature, and the spec field that named it."""
    model = ctx.spec.model
    if model.registered is not None:
        with ctx.db.connect() as conn:
            entry = registry.get(conn, model.registered)
        return registry.verified(entry), entry.signature, "model.registered"
    source = resolve_in(model.path, data_dirs(), "model.path")
    return source, read_signature(source, "model.path"), "model.path"


def _copy(fmt: ModelFormat, source: Path, target: Path) -> str | None:
    """Copy the file where the servers load it; the ONNX output's old name if renamed."""
    if target.exists():  # a retried stage
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    if fmt is ModelFormat.ONNX:
        from inferbench.backends.base import Backend

        return copy_onnx_naming_output(source, target, Backend.output_name)
    if fmt is ModelFormat.SAVEDMODEL:
        shutil.copytree(source.parent if source.name == SAVEDMODEL_FILE else source, target)
    else:
        shutil.copyfile(source, target)
    return None


def _num_outputs(fmt: ModelFormat, path: Path, inputs: tuple[TensorSpec, ...], device: str,
                 batch: int, field: str) -> int:
    """The size of the file's output per sample, from one run on seeded payload."""
    try:
        out = np.asarray(run_artifact(fmt, path, device)(
            sample_inputs(inputs, batch, np.random.default_rng(CHECK_SEED))))
    except InferBenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - the file cannot run on its own signature
        raise InferBenchError(f"{field}: the model file fails on a batch of {batch} of its "
                              f"inputs ({type(exc).__name__}: {str(exc)[:300]}); fix: check "
                              "model.inputs' shapes and types against the model") from None
    if out.ndim != 2 or out.shape[0] != batch:
        raise InferBenchError(f"{field}: the model file answers a batch of {batch} with shape "
                              f"{out.shape}; the servers declare one row of outputs per sample "
                              f"([{batch}, n]); fix: serve a model whose first output is "
                              "[batch, n] (e.g. the logits)")
    return int(out.shape[1])


def take_model_file(ctx: StageContext) -> tuple[dict, RunSignature]:
    """The run's ModelInfo and signature for a model file (see the module's docstring)."""
    model, spec = ctx.spec.model, ctx.spec
    source, file_sig, field = _find(ctx)
    why = formats_mismatch(field, file_sig.format, spec.formats, spec.platforms)
    if why:
        raise InferBenchError(why)
    inputs = complete_inputs(file_sig, model.inputs, spec.batch_sizes)
    target = ctx.run_dir.model_dir / ARTIFACT_NAMES[file_sig.format]
    renamed = _copy(file_sig.format, source, target)
    num_outputs = _num_outputs(file_sig.format, target, inputs, spec.hardware,
                               min(spec.batch_sizes), field)
    info = {
        "model_name": model.name,
        "family": model.kind,
        "hyperparams": {**model.model_dump(mode="json", exclude_none=True),
                        "file": {"source": str(source), "format": file_sig.format.value,
                                 "signature": file_sig.to_json(),
                                 "output_renamed_from": renamed}},
        "n_parameters": count_parameters(file_sig.format, target),
        "artifact_path": str(target),
        "sha256": hash_model(source),
    }
    return info, RunSignature(inputs, num_outputs)
