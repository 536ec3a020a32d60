#!/usr/bin/env bash
# The main job: set up, start the embedded PostgreSQL + Airflow, run the demo benchmark
# through the Airflow scheduler, and print its summary and the report's path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/inferbench run "${1:-examples/demo.json}"
