"""Reading a file a user named in a spec or a DAG parameter (a trace, a sweep).

The worker reads these files on behalf of whoever triggered the run, so a path is accepted
only inside the data directories (`INFERBENCH_DATA_DIRS`, separated by ':'; default
`<home>/data`), only as a regular file (a device or a FIFO would block or never end), only
up to a size, and only as UTF-8 text. Errors name the field, the path and the fix, never the
file's content: a line of someone's secrets must not reach a task log or the results DB.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from inferbench import paths
from inferbench.errors import InferBenchError

DATA_DIRS_ENV = "INFERBENCH_DATA_DIRS"


def data_dirs() -> list[Path]:
    """The directories a spec's files may come from, resolved (symlinks followed)."""
    env = os.environ.get(DATA_DIRS_ENV)
    dirs = [d for d in env.split(os.pathsep) if d] if env else [str(paths.home() / "data")]
    return [Path(d).resolve() for d in dirs]


def resolve_in(path: str | Path, dirs: Sequence[Path], field: str) -> Path:
    """`path` resolved inside one of `dirs` (a relative path is taken from the first one);
    refused when it resolves anywhere else, through `..` or a symlink alike."""
    raw = Path(path)
    resolved = (raw if raw.is_absolute() else dirs[0] / raw).resolve()
    if not any(resolved.is_relative_to(d) for d in dirs):
        allowed = ", ".join(str(d) for d in dirs)
        raise InferBenchError(
            f"{field} {str(path)!r} is outside the data directories ({allowed}); fix: put "
            f"the file there, or add its directory to {DATA_DIRS_ENV} on the workers")
    return resolved


def read_text(path: str | Path, *, field: str, max_bytes: int,
              dirs: Sequence[Path] | None = None) -> str:
    """The text of a regular file of at most `max_bytes`, inside `dirs` when given (None:
    any directory, for a file a user names on their own command line)."""
    target = resolve_in(path, dirs, field) if dirs is not None else Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then judges the
        # very file opened (no swap between a check and the open).
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InferBenchError(f"{field} {str(path)!r} does not exist; fix: give the path "
                              "of an existing file") from None
    except OSError as exc:
        raise InferBenchError(f"{field} {str(path)!r} cannot be opened ({exc.strerror}); "
                              "fix: give a readable regular file") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InferBenchError(f"{field} {str(path)!r} is not a regular file (a device, "
                                  "FIFO or directory); fix: give a regular file")
        if info.st_size > max_bytes:
            raise InferBenchError(f"{field} {str(path)!r} is {info.st_size} bytes, over the "
                                  f"limit of {max_bytes}; fix: split or shorten it")
        data = f.read(max_bytes + 1)  # the file may have grown since fstat
    if len(data) > max_bytes:
        raise InferBenchError(f"{field} {str(path)!r} is over the limit of {max_bytes} "
                              "bytes; fix: split or shorten it")
    if b"\0" in data:
        raise InferBenchError(f"{field} {str(path)!r} is binary (it holds NUL bytes); fix: "
                              "give a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InferBenchError(f"{field} {str(path)!r} is not UTF-8 text (byte {exc.start}); "
                              "fix: give a UTF-8 text file") from None
