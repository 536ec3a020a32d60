#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine with Python 3.11: a virtual environment
# in .venv with the project (editable) and every dependency of the embedded default:
# Airflow, an embedded PostgreSQL (pgserver), torch (CPU), ONNX Runtime, FastAPI, and the
# real Triton server bundled in the nvidia-pytriton wheel. Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
    echo "error: Python 3.11 or 3.12 is needed ($PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
    exit 1
fi

if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "installing python3-venv (apt)"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi

# TorchServe's frontend is Java (17 or later).
if ! command -v java >/dev/null 2>&1; then
    echo "installing Java 17 for TorchServe (apt)"
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.inferbench-setup
wanted=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    # .venv ends near 4 GB (torch, TensorFlow's CPU build, Airflow), .venvs/mlserver 0.4 GB,
    # and pip unpacks each wheel beside it on the way.
    bash scripts/need-disk.sh 6 . "installing the Python dependencies into .venv"
    echo "installing Python dependencies into .venv (first time: a few minutes)"
    # torch first and pinned: an unpinned torch resolves to the multi-GB CUDA build. Pip reads
    # its index and find-links settings (mirrors, a local CPU wheel) from the machine's config.
    .venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v '^WARNING: Location' || true
    .venv/bin/pip install -q --disable-pip-version-check -e ".[all]" 2>&1 | grep -v '^WARNING: Location' || true
    # TF Serving's own protos, for the tests that check the gRPC client's messages against
    # them byte for byte. --no-deps: the package asks for `tensorflow`, whose CPU build is
    # installed as tensorflow-cpu (pip check names this one mismatch).
    .venv/bin/pip install -q --disable-pip-version-check --no-deps "tensorflow-serving-api==2.21.0" 2>&1 | grep -v '^WARNING: Location' || true
    .venv/bin/python -c 'import torch, airflow, onnxruntime, pgserver, pytriton, fastapi, ts, tensorflow_serving' \
        || { echo "error: dependency installation failed (see pip output above)" >&2; exit 1; }
    echo "$wanted" > "$stamp"
fi
# MLServer pins fastapi<0.116, which .venv cannot hold: its own venv (.venvs/mlserver), about
# a minute the first time, a stamp check after.
.venv/bin/python -m inferbench.sidevenv create mlserver
