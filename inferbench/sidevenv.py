"""Side virtual environments: serving platforms whose pins conflict with the project's venv.

MLServer 1.7.1 pins fastapi<0.116 / starlette<0.47 while the project runs fastapi 0.136,
so it cannot live in the main environment. A side environment is a plain `python -m venv`
beside the main one, filled by pip from a pinned requirement list (pip reads the machine's
own configuration: index, mirrors, find-links, constraints), and reused while its stamp,
a hash of the requirement list and the interpreter version, still matches.

Where they live: `$INFERBENCH_SIDE_VENVS/<name>`, by default `.venvs/<name>` beside the
main venv (`<sys.prefix>/../.venvs/<name>`). Create one ahead of a benchmark with
`python -m inferbench.sidevenv create mlserver` (scripts/setup.sh does); a backend that
needs one creates it on first use otherwise (a few minutes, once).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from inferbench.errors import InferBenchError

# Named requirement lists. Keep each list fully pinned where the versions matter for the
# measurement (the serving platform and its runtime), so every host benchmarks the same
# build. onnxruntime matches the main venv's, which the convert stage checks outputs with.
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    # uvloop: 0.22 dropped the implicit event loop of get_event_loop(), which MLServer
    # 1.7.1's parallel workers call before any loop runs (every worker then dies at start).
    "mlserver": ("mlserver==1.7.1", "onnxruntime==1.32.0", "numpy==1.26.4", "uvloop==0.21.0"),
    # The same server on GPU workers: ONNX Runtime's CUDA build (the newest the package
    # index holds; it replaces `onnxruntime`, so it cannot share an environment with it).
    # Created only when a spec asks MLServer for a GPU.
    "mlserver-gpu": ("mlserver==1.7.1", "onnxruntime-gpu==1.31.1", "numpy==1.26.4",
                     "uvloop==0.21.0"),
}

# The distribution whose import proves each environment usable after installation.
_CHECK_IMPORTS: dict[str, tuple[str, ...]] = {
    "mlserver": ("mlserver", "onnxruntime", "numpy"),
    "mlserver-gpu": ("mlserver", "onnxruntime", "numpy"),
}

ENV_VAR = "INFERBENCH_SIDE_VENVS"
_STAMP = ".inferbench-sidevenv"


def root() -> Path:
    """Directory holding every side environment."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return Path(sys.prefix).resolve().parent / ".venvs"


def path(name: str) -> Path:
    _requirements(name)
    return root() / name


def bin_dir(name: str) -> Path:
    return path(name) / "bin"


def python(name: str) -> Path:
    return bin_dir(name) / "python"


def _requirements(name: str) -> tuple[str, ...]:
    try:
        return REQUIREMENTS[name]
    except KeyError:
        raise InferBenchError(
            f"unknown side environment {name!r}; known: {', '.join(sorted(REQUIREMENTS))}"
        ) from None


def stamp_value(name: str) -> str:
    """Hash of what the environment must hold: the requirement list and the interpreter."""
    payload = json.dumps({"requirements": list(_requirements(name)),
                          "python": list(sys.version_info[:3])})
    return hashlib.sha256(payload.encode()).hexdigest()


def is_current(name: str) -> bool:
    stamp = path(name) / _STAMP
    try:
        return stamp.read_text().strip() == stamp_value(name) and python(name).exists()
    except OSError:
        return False


def ensure(name: str, *, quiet: bool = True) -> Path:
    """The side environment `name`, created or brought up to date first if needed.

    Returns its bin/ directory (its python is `bin/python`, its console scripts beside it).
    Concurrent callers (two serve stages on one host) serialise on a lock file; the second
    finds the stamp written and returns at once."""
    requirements = _requirements(name)
    if is_current(name):
        return bin_dir(name)
    target = path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_current(name):
            return bin_dir(name)
        _create(name, target, requirements, quiet=quiet)
    return bin_dir(name)


def _create(name: str, target: Path, requirements: Sequence[str], *, quiet: bool) -> None:
    fix = (f"fix: check that pip can reach its package index from this host, then run "
           f"`{Path(sys.executable).name} -m inferbench.sidevenv create {name}` "
           f"(or set {ENV_VAR} to a writable directory)")
    # A stale or half-built environment is rebuilt from scratch: upgrading in place can keep
    # packages a changed requirement list no longer wants.
    if target.exists():
        shutil.rmtree(target)
    steps = [
        [sys.executable, "-m", "venv", str(target)],
        [str(target / "bin" / "python"), "-m", "pip", "install",
         "--disable-pip-version-check", *(["-q"] if quiet else []), *requirements],
    ]
    for argv in steps:
        try:
            result = subprocess.run(argv, capture_output=quiet, text=True,
                                    stdin=subprocess.DEVNULL, check=False)
        except OSError as exc:
            raise InferBenchError(f"could not create side environment {name!r} at {target}: "
                                  f"{exc}; {fix}") from None
        if result.returncode != 0:
            output = ((result.stdout or "") + (result.stderr or "")).strip().splitlines()
            detail = "\n".join(output[-15:])
            raise InferBenchError(
                f"could not create side environment {name!r} at {target}: "
                f"`{' '.join(argv[:4])} ...` exited with {result.returncode}:\n{detail}\n{fix}")
    check = "; ".join(f"import {module}" for module in _CHECK_IMPORTS.get(name, ()))
    if check:
        result = subprocess.run([str(target / "bin" / "python"), "-c", check],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InferBenchError(
                f"side environment {name!r} at {target} was installed but `{check}` fails:\n"
                f"{result.stderr.strip()[-2000:]}\n{fix}")
    (target / _STAMP).write_text(stamp_value(name) + "\n")


def distribution_versions(name: str, distributions: Sequence[str]) -> dict[str, str]:
    """Versions of `distributions` installed in the side environment (missing ones absent)."""
    code = ("import json, sys\n"
            "from importlib.metadata import version, PackageNotFoundError\n"
            "out = {}\n"
            "for d in sys.argv[1:]:\n"
            "    try: out[d] = version(d)\n"
            "    except PackageNotFoundError: pass\n"
            "print(json.dumps(out))\n")
    try:
        result = subprocess.run([str(python(name)), "-c", code, *distributions],
                                capture_output=True, text=True, timeout=30, check=True)
        return json.loads(result.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferbench.sidevenv",
                                     description="Create or locate side virtual environments.")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create (or update) side environments")
    create.add_argument("names", nargs="+", choices=sorted(REQUIREMENTS))
    create.add_argument("-v", "--verbose", action="store_true", help="show pip's output")
    show = sub.add_parser("path", help="print where a side environment lives")
    show.add_argument("name", choices=sorted(REQUIREMENTS))
    args = parser.parse_args(argv)
    try:
        if args.command == "path":
            print(path(args.name))
            return 0
        for name in args.names:
            if is_current(name):
                print(f"{name}: up to date at {path(name)}")
                continue
            print(f"{name}: creating at {path(name)} ({' '.join(REQUIREMENTS[name])}); "
                  "about a minute", flush=True)
            started = time.monotonic()
            # pip's output is kept and shown only if it fails (its last lines).
            ensure(name, quiet=not args.verbose)
            print(f"{name}: ready at {path(name)} ({time.monotonic() - started:.0f} s)")
    except InferBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
