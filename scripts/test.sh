#!/usr/bin/env bash
# The test suite: set up, then every tier that can run on this machine (unit, integration
# against a real PostgreSQL and real servers, Triton, one full run through the Airflow
# scheduler). Tests that need Docker or a GPU skip themselves where there is none.
#
# The heavier tiers, the docker tier (marker `docker`: a Docker daemon, images built from
# the local base), the cluster tier (marker `cluster`: the compose cluster brought up, two
# benchmarks run through it) and the same checks repeated on more platforms (marker `slow`),
# run in CI (CI=true) or with INFERBENCH_TESTS=all; a run without either leaves them out. A `-m` given
# here replaces that choice (pytest keeps the last one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The tests' models, repositories and databases peak near 2.5 GB of temporary folders.
bash scripts/need-disk.sh 3 "${TMPDIR:-/tmp}" "the test suite's temporary folders"
if [[ "${CI:-}" == "true" || "${INFERBENCH_TESTS:-}" == "all" ]]; then
    echo "test.sh: every tier (CI=${CI:-} INFERBENCH_TESTS=${INFERBENCH_TESTS:-})"
    exec .venv/bin/python -m pytest "$@"
fi
echo "test.sh: all but the heavier tiers (docker, cluster, slow); INFERBENCH_TESTS=all runs them too"
exec .venv/bin/python -m pytest -m "not slow and not docker and not cluster" "$@"
