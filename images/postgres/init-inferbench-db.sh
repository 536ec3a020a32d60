#!/usr/bin/env bash
# First start of the cluster's PostgreSQL: the results database and its role, beside Airflow's.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE inferbench LOGIN PASSWORD '${POSTGRES_PASSWORD}';
CREATE DATABASE inferbench OWNER inferbench;
SQL
