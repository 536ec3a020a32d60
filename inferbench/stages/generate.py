"""generate: build the model (the canonical generator or an architecture), or take the
user's model file, and register it; write the signature every later stage reads."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any, TypedDict

from inferbench import containers, perfdb
from inferbench.gpu_sharing import Sharing, check_mps_available
from inferbench.perfdb import schema, writer
from inferbench.pipeline import RUN_TIMEOUT_S
from inferbench.stages.common import (
    SIGNATURE_FILE,
    RunSignature,
    StageContext,
    write_json,
)


class ModelInfo(TypedDict):
    """The run's model: a row of the models table and `model/model.json`."""

    model_name: str
    family: str
    hyperparams: dict[str, Any]   # the spec's model section (a file's: and what it says)
    n_parameters: int
    artifact_path: str            # model.pt: the state dict the convert stage loads; or
    #                               the copy of the user's file the servers load
    sha256: str                   # of that artifact; a file's: of the file as given


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run(ctx: StageContext) -> ModelInfo:
    import torch

    from inferbench.models.generator import build_model, count_parameters

    if ctx.spec.sharing is Sharing.MPS:  # refused on this worker before anything is built
        check_mps_available(containers.runtime_from_env())
    ctx.run_dir.ensure()
    write_json(ctx.run_dir.spec_file, ctx.spec.model_dump(mode="json"))
    ctx.run_dir.model_dir.mkdir(exist_ok=True)
    model_spec = ctx.spec.model
    perfdb.migrate(ctx.db_url)
    if model_spec.is_file:
        from inferbench.stages.model_file import take_model_file

        info, signature = take_model_file(ctx)
    else:
        model = build_model(model_spec)
        artifact = ctx.run_dir.model_dir / "model.pt"
        torch.save(model.state_dict(), artifact)
        info = {
            "model_name": model_spec.name,
            "family": model_spec.kind,
            "hyperparams": model_spec.model_dump(mode="json"),
            "n_parameters": count_parameters(model),
            "artifact_path": str(artifact),
            "sha256": sha256_file(artifact),
        }
        signature = RunSignature(model_spec.generated_inputs, model_spec.num_outputs)
    write_json(ctx.run_dir.model_dir / SIGNATURE_FILE, signature.to_json())
    write_json(ctx.run_dir.model_dir / "model.json", info)
    with ctx.db.begin() as conn:
        writer.register_run(conn, ctx.run_id, ctx.spec)
        for stale in writer.abort_abandoned_runs(conn, timedelta(seconds=RUN_TIMEOUT_S)):
            print(f"run {stale!r} ended long ago without its analysis: marked aborted")
        writer.upsert(conn, schema.models, {"run_id": ctx.run_id, "created_at": writer.now(),
                                            **info})
    return info
