#!/usr/bin/env bash
# need-disk.sh GB DIR WHAT: exits 1, with an error that says how much is free and what to do,
# when the filesystem holding DIR has less than GB gigabytes free. Checked before the steps that
# write gigabytes, so that a full disk is named at once instead of failing mid-install.
set -euo pipefail
need_gb=${1:?usage: need-disk.sh GB DIR WHAT}
dir=$(cd "${2:?usage: need-disk.sh GB DIR WHAT}" && pwd)
what=${3:?usage: need-disk.sh GB DIR WHAT}
read -r free_kb mount < <(df -Pk "$dir" | awk 'NR == 2 {print $4, $6}')
if [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
    echo "error: $what needs about $need_gb GB free on $mount (holding $dir); $((free_kb / 1024 / 1024)) GB is free." >&2
    echo "fix: free space there (old clones and their .venv, unused Docker images: docker image prune), then re-run" >&2
    exit 1
fi
