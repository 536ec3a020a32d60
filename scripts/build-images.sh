#!/usr/bin/env bash
# Builds the images of the docker runtime: inferbench/stage:cpu (stages and serving containers)
# and inferbench/airflow:latest (the cluster's Airflow components, docker-compose.yaml).
# Each Dockerfile's BASE_IMAGE defaults to the official upstream image; when it cannot be
# pulled (no registry reachable), a local Debian base is built offline and used instead.
# Package indexes and local wheels come from this machine's pip configuration.
# Usage: scripts/build-images.sh [--variant cpu|gpu]   Prints each image's size.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build at a time per checkout: builds share the images/.build context folder.
exec 9>images/.build.lock
flock 9
variant=cpu
[ "${1:-}" = "--variant" ] && variant=${2:?--variant needs cpu or gpu}

upstream=python:3.11-slim-bookworm
if docker image inspect "$upstream" >/dev/null 2>&1 || timeout 60 docker pull -q "$upstream" >/dev/null 2>&1; then
    base=$upstream
else
    echo "cannot pull $upstream; building a local base image instead"
    base=inferbench/local-base:bookworm
    bash images/base/build-local-base.sh "$base"
fi

pip_setting() {  # this machine's pip setting: config file first, then environment
    python3 -m pip config get "global.$1" 2>/dev/null || printenv "$2" || true
}
# Into the build context (images/.build, not committed): the CA bundle pip trusts here, and
# local wheels named by pip's find-links (the CPU torch wheel on these machines); the GPU
# variant takes torch from the index (its CUDA build).
rm -rf images/.build && mkdir -p images/.build/wheels
cert=$(pip_setting cert PIP_CERT)
[ -n "$cert" ] && [ -f "$cert" ] && cp "$cert" images/.build/ca.crt
if [ "$variant" = cpu ]; then
    for dir in $(pip_setting find-links PIP_FIND_LINKS); do
        [ -d "$dir" ] && find "$dir" -maxdepth 1 -name 'torch-2.13.0*.whl' -exec cp {} images/.build/wheels/ \;
    done
    extras=models,serve,triton,docker
else
    extras=models,serve,triton,docker,gpu
fi
index=$(pip_setting index-url PIP_INDEX_URL)

build() {  # build TAG DOCKERFILE [extra docker build args]
    local tag=$1 file=$2; shift 2
    echo "building $tag from $base"
    # The classic builder: Debian's daemon may come without the buildx plugin.
    DOCKER_BUILDKIT=0 docker build -q -f "$file" -t "$tag" --build-arg BASE_IMAGE="$base" \
        --build-arg PIP_INDEX_URL="$index" "$@" . >/dev/null
    docker image inspect -f "{{index .RepoTags 0}} {{.Size}}" "$tag" \
        | awk '{printf "%s: %.0f MB\n", $1, $2/1e6}'
}
trap 'rm -rf images/.build' EXIT
build "inferbench/stage:$variant" images/stage/Dockerfile --build-arg EXTRAS="$extras"
[ "${SKIP_AIRFLOW_IMAGE:-0}" = 1 ] || build inferbench/airflow:latest images/airflow/Dockerfile
