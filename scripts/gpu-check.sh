#!/usr/bin/env bash
# The GPU path end to end, on a host with an NVIDIA GPU and a CUDA build of torch: the
# TorchScript platform on the GPU behind the project's FastAPI server, one short point with
# NVML readings; prints where the server runs the model, utilisation, power, energy per
# request (inferbench/gpu_check.py). Under 8 minutes; writes nothing outside a temp dir.
#
#   bash scripts/gpu-check.sh [--device gpu:0] [--seconds 20] [--json]
#
# PYTHON names the interpreter whose torch has CUDA (default python3). The project and its
# server's packages are installed into it if missing (pip's own index settings apply).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" - <<'CHECK'
import sys
try:
    import torch
except ImportError:
    sys.exit(f"gpu-check: {sys.executable} has no torch; set PYTHON to the interpreter "
             "with a CUDA build of torch")
if not torch.cuda.is_available():
    sys.exit(f"gpu-check: torch {torch.__version__} sees no CUDA device (built for CUDA: "
             f"{torch.version.cuda or 'no'}); run this on a GPU host with a CUDA build of torch")
print(f"gpu-check: torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name(0)}")
CHECK
if ! "$PY" -c "import inferbench, fastapi, uvicorn, pynvml" 2>/dev/null; then
    "$PY" -m pip install -q -e '.[gpu-check]'
fi
exec timeout 480 "$PY" -m inferbench.gpu_check "$@"
