#!/usr/bin/env bash
# First start of the cluster's PostgreSQL: the results database and its role, beside Airflow's.
# The role has a password of its own (RESULTS_DB_PASSWORD): every stage container carries it
# in its results database URL, so it must not be the superuser's (POSTGRES_PASSWORD), and the
# role may not even connect to Airflow's database.
set -euo pipefail
: "${RESULTS_DB_PASSWORD:?set RESULTS_DB_PASSWORD in .env}"
if [ "$RESULTS_DB_PASSWORD" = "$POSTGRES_PASSWORD" ]; then
  echo "RESULTS_DB_PASSWORD is POSTGRES_PASSWORD; fix: give the results role its own" >&2
  exit 1
fi
# psql quotes the variables itself (:'...', :"..."), whatever characters the password holds.
psql -v ON_ERROR_STOP=1 -v results_password="$RESULTS_DB_PASSWORD" \
     -v airflow_db="$POSTGRES_DB" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE inferbench LOGIN PASSWORD :'results_password';
CREATE DATABASE inferbench OWNER inferbench;
REVOKE CONNECT ON DATABASE :"airflow_db" FROM PUBLIC;
SQL
