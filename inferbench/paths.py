"""Where things live on disk: the InferBench home, run directories and their files.

One home holds the embedded PostgreSQL data, the embedded Airflow home and every run's
directory; `INFERBENCH_HOME` overrides the default (`.inferbench` beside a source checkout,
else `~/.inferbench`). Stages exchange artifacts through the run directory, so a stage
container only needs that directory mounted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from inferbench.errors import InferBenchError

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path | None:
    """The source checkout this package runs from, if any (editable install)."""
    return _PROJECT_ROOT if (_PROJECT_ROOT / "pyproject.toml").exists() else None


def home() -> Path:
    env = os.environ.get("INFERBENCH_HOME")
    if env:
        return Path(env).resolve()
    root = project_root()
    return (root / ".inferbench") if root else Path.home() / ".inferbench"


# A run id's characters kept as they are in its directory name; every other byte is
# written as '=' and two hex digits. '=' is escaped too, so the mapping is one to one (two
# runs never share a directory), and every platform's config syntax takes the result
# ('%' would be read as an escape by URL-minded servers, ':' splits Docker mounts).
_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_MAX_NAME_BYTES = 255  # a directory name's limit on Linux file systems


def safe_run_id(run_id: str) -> str:
    """The directory name of a run: Airflow run ids hold ':' and '+'."""
    if not run_id or run_id in (".", ".."):
        raise InferBenchError(f"run id {run_id!r} cannot name a run directory; fix: give a "
                              "run id with at least one character other than '.'")
    name = "".join(ch if ch in _KEPT else "".join(f"={b:02x}" for b in ch.encode())
                   for ch in run_id)
    if len(name) > _MAX_NAME_BYTES:
        raise InferBenchError(f"run id {run_id[:40]!r}... is too long for a directory name "
                              f"({len(name)} bytes escaped, limit {_MAX_NAME_BYTES}); fix: "
                              "give a shorter run id")
    return name


class RunDir:
    """The files of one benchmark run. Per-platform files sit in a sub-directory each."""

    def __init__(self, run_id: str, root: Path | None = None) -> None:
        self.run_id = run_id
        self.path = (root or home() / "runs") / safe_run_id(run_id)

    def ensure(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def spec_file(self) -> Path:
        return self.path / "spec.json"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    def platform_dir(self, platform: str) -> Path:
        path = self.path / "platforms" / platform
        path.mkdir(parents=True, exist_ok=True)
        return path

    def config_files(self, platform: str, config: int = 0) -> ConfigFiles:
        """One server configuration's files (its directory is created here)."""
        path = self.platform_dir(platform) / f"config-{config}"
        path.mkdir(parents=True, exist_ok=True)
        return ConfigFiles(path)

    def config_dir(self, platform: str, config: int = 0) -> Path:
        """One server configuration's directory: its server's files, endpoint and points."""
        return self.config_files(platform, config).dir

    def endpoint_file(self, platform: str, config: int = 0) -> Path:
        return self.config_files(platform, config).endpoint

    def load_file(self, platform: str, config: int = 0) -> Path:
        return self.config_files(platform, config).load


@dataclass(frozen=True)
class ConfigFiles:
    """The files of one server configuration of one platform (`platforms/P/config-N/`):
    the serve stage writes the endpoint and the server's own files, the load stage the
    summary, the per-point request records and the resource samples."""

    dir: Path

    @property
    def endpoint(self) -> Path:
        return self.dir / "endpoint.json"

    @property
    def load(self) -> Path:
        return self.dir / "load.json"

    @property
    def samples(self) -> Path:
        return self.dir / "samples.json"

    @property
    def points_dir(self) -> Path:
        return self.dir / "points"

    def point_records(self, point: int) -> Path:
        """One measurement point's per-request records (numpy .npz)."""
        return self.points_dir / f"{point}.npz"

    @property
    def server_log(self) -> Path:
        return self.dir / "server.log"

    @property
    def attempts_dir(self) -> Path:
        """Earlier attempts' files, one numbered directory each (1 = the first)."""
        return self.dir / "attempts"

    @property
    def measurement_files(self) -> tuple[Path, ...]:
        """What one load attempt writes."""
        return self.load, self.samples, self.points_dir

    @property
    def attempt_files(self) -> tuple[Path, ...]:
        """What one attempt at the configuration writes: its server's and its load's."""
        return self.endpoint, self.server_log, *self.measurement_files

    def set_aside(self, files: tuple[Path, ...]) -> Path | None:
        """Move an earlier attempt's `files` (those that exist) into the next numbered
        directory under attempts/, so that a retried or cleared task never writes over what
        an earlier attempt measured. Returns that directory, None when there was nothing."""
        present = [f for f in files if f.exists()]
        if not present:
            return None
        number = 1 + max((int(d.name) for d in self.attempts_dir.glob("*") if d.name.isdigit()),
                         default=0)
        target = self.attempts_dir / str(number)
        target.mkdir(parents=True)
        for path in present:
            path.rename(target / path.name)
        return target
