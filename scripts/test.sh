#!/usr/bin/env bash
# The test suite: set up, then every tier that can run on this machine (unit, integration
# against a real PostgreSQL and real servers, Triton, one full run through the Airflow
# scheduler). Tests that need Docker or a GPU skip themselves where there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
