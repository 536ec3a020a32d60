#!/usr/bin/env bash
# Starts redis-server with REDIS_PASSWORD required of every client, listening on the
# container's addresses, its data in /data; extra arguments go to redis-server.
set -euo pipefail
: "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env: the broker gets no default password}"
conf=/run/inferbench-redis.conf
umask 077
{
    echo "bind 0.0.0.0"
    echo "protected-mode yes"
    echo "dir /data"
    printf 'requirepass "%s"\n' "$REDIS_PASSWORD"
} > "$conf"
chown redis:redis "$conf" /data
exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$conf" "$@"
