#!/usr/bin/env bash
# The official postgres image's start-up contract on Debian's postgresql package (the image
# built on the local base): as root, own PGDATA and drop to the postgres user; on the first
# start (an empty PGDATA) initdb with POSTGRES_USER as superuser and POSTGRES_PASSWORD
# (scram-sha-256 over TCP), create POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sh and *.sql
# against a server listening on its socket only, stop it; then run the command (postgres,
# listening on every address of the container).
set -euo pipefail
bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1)
export PATH="$bin:$PATH"
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
socket=/var/run/postgresql

if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$socket"
    chown -R postgres:postgres "$PGDATA" "$socket"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD: the superuser gets no default password}"
    pwfile=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    # UTF-8, as the official image's: the minimal base has no locale set, and initdb would
    # take SQL_ASCII, whose text psycopg 3 hands back as bytes.
    initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    # Other containers connect over the compose network, with a password.
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $socket" -w start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        psql -v ON_ERROR_STOP=1 -h "$socket" -U "$POSTGRES_USER" -d postgres -q \
             -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; PGHOST=$socket bash "$f" ;;
            *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 -h "$socket" \
                       -U "$POSTGRES_USER" -d "$POSTGRES_DB" -q -f "$f" ;;
            *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL initialised in $PGDATA"
fi
exec "$@"
