#!/usr/bin/env bash
# Makes a Docker daemon available: installs Debian's docker.io (and debootstrap, for the local
# base image) when missing, and starts dockerd in the background when none answers (these
# machines have no systemd). Exit status 0 only when `docker info` works afterwards.
set -euo pipefail
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
        || ! command -v docker-compose >/dev/null; then
    echo "installing docker.io, docker-compose and debootstrap (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
fi
if docker info >/dev/null 2>&1; then exit 0; fi
log=${DOCKERD_LOG:-/var/log/inferbench-dockerd.log}
echo "starting dockerd (log: $log)"
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then exit 0; fi
    sleep 1
done
echo "error: dockerd did not come up; last log lines:" >&2
tail -n 20 "$log" >&2
exit 1
