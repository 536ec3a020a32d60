"""The model registry: model files users add once by name and then name in a spec
(`"model": {"registered": "NAME"}`).

A row in the results database (table registered_models) says what the file is: its format,
the signature read from it, its sha256; the file itself is copied into the registry's own
directory (`<home>/models/NAME/`), so a run never depends on where it was added from, and
its hash is checked again before each use: a copy changed behind the registry's back is
refused, not benchmarked under the old name.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, delete, insert, select

from inferbench import paths
from inferbench.errors import InferBenchError
from inferbench.models.user_model import (
    REGISTERED_NAME,
    SAVEDMODEL_FILE,
    FileSignature,
    hash_model,
    read_signature,
)
from inferbench.perfdb import schema


def registry_dir() -> Path:
    return paths.home() / "models"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    format: str
    stored_path: Path
    source_path: str
    sha256: str
    size_bytes: int
    signature: FileSignature
    description: str
    added_at: datetime

    def to_json(self) -> dict:
        return {"name": self.name, "format": self.format, "stored_path": str(self.stored_path),
                "source_path": self.source_path, "sha256": self.sha256,
                "size_bytes": self.size_bytes, "signature": self.signature.to_json(),
                "description": self.description, "added_at": self.added_at.isoformat()}


def _from_row(row) -> RegisteredModel:
    return RegisteredModel(row.name, row.format, Path(row.stored_path), row.source_path,
                           row.sha256, row.size_bytes, FileSignature.from_json(row.signature),
                           row.description, row.added_at)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) \
        if path.is_dir() else path.stat().st_size


def add(conn: Connection, name: str, source: Path, description: str = "") -> RegisteredModel:
    """Check the file is a model the benchmark can serve, copy it into the registry and
    record it; InferBenchError naming the problem and the fix otherwise."""
    if not re.fullmatch(REGISTERED_NAME, name):
        raise InferBenchError(f"model name {name!r} is not a registry name; fix: lowercase "
                              "letters, digits, _ and -, starting with a letter or digit, at "
                              "most 63 characters")
    if conn.execute(select(schema.registered_models.c.name)
                    .where(schema.registered_models.c.name == name)).first():
        raise InferBenchError(f"model {name!r} is already registered; fix: choose another "
                              f"name, or `inferbench models remove {name}` first")
    source = source.resolve()
    sig = read_signature(source, "FILE")
    origin = source.parent if source.name == SAVEDMODEL_FILE else source
    target_dir = registry_dir() / name
    if target_dir.exists():  # left by an add that failed after copying
        shutil.rmtree(target_dir)
    target_dir.mkdir(parents=True)
    target = target_dir / ("savedmodel" if origin.is_dir() else origin.name)
    try:
        if origin.is_dir():
            shutil.copytree(origin, target)
        else:
            shutil.copyfile(origin, target)
        model = RegisteredModel(name, sig.format.value, target, str(source), hash_model(target),
                                _size(target), sig, description, datetime.now(UTC))
        conn.execute(insert(schema.registered_models).values(
            **{**model.to_json(), "stored_path": str(target), "signature": sig.to_json(),
               "added_at": model.added_at}))
    except BaseException:
        shutil.rmtree(target_dir, ignore_errors=True)
        raise
    return model


def get(conn: Connection, name: str) -> RegisteredModel:
    row = conn.execute(select(schema.registered_models)
                       .where(schema.registered_models.c.name == name)).first()
    if row is None:
        known = [m.name for m in list_models(conn)]
        raise InferBenchError(f"model.registered {name!r} is not in the model registry "
                              f"(registered: {known or 'none'}); fix: `inferbench models add "
                              f"{name} FILE`, or name one of those")
    return _from_row(row)


def verified(model: RegisteredModel) -> Path:
    """The registry's copy of the model, after checking it is the file that was added."""
    if not model.stored_path.exists():
        raise InferBenchError(f"registered model {model.name!r}: its file {model.stored_path} "
                              "is gone (this worker does not share the registry's directory?); "
                              f"fix: `inferbench models remove {model.name}` and add it again, "
                              "or share INFERBENCH_HOME/models with the workers")
    digest = hash_model(model.stored_path)
    if digest != model.sha256:
        raise InferBenchError(f"registered model {model.name!r}: {model.stored_path} changed "
                              f"since it was added (sha256 {digest[:12]}, registered "
                              f"{model.sha256[:12]}); fix: remove it and add the file again")
    return model.stored_path


def list_models(conn: Connection) -> list[RegisteredModel]:
    rows = conn.execute(select(schema.registered_models)
                        .order_by(schema.registered_models.c.name)).all()
    return [_from_row(r) for r in rows]


def remove(conn: Connection, name: str) -> RegisteredModel:
    """Forget a model and delete the registry's copy (runs that used it keep theirs)."""
    model = get(conn, name)
    conn.execute(delete(schema.registered_models)
                 .where(schema.registered_models.c.name == name))
    shutil.rmtree(model.stored_path.parent, ignore_errors=True)
    return model
