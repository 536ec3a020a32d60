#!/usr/bin/env bash
# Builds the images of the docker runtime: inferbench/stage:cpu (stages and serving containers)
# and the cluster's (docker-compose.yaml): inferbench/airflow:latest (the Airflow components),
# inferbench/postgres:latest and inferbench/redis:latest.
# Each Dockerfile's BASE_IMAGE defaults to the official upstream image; when it cannot be
# pulled (no registry reachable), a local Debian base is built offline and used instead (the
# postgres and redis images then install Debian's packages from this machine's apt mirror).
# Package indexes and local wheels come from this machine's pip configuration.
# Usage: scripts/build-images.sh [--variant cpu|gpu] [--only stage,airflow,postgres,redis]
# Prints each image's size, and removes the images its earlier builds left untagged.
# SKIP_AIRFLOW_IMAGE=1 is --only stage (the docker test tier's).
set -euo pipefail
cd "$(dirname "$0")/.."
# One build at a time per checkout: builds share the images/.build context folder.
exec 9>images/.build.lock
flock 9
# A rebuild whose dependencies changed writes the stage image and its build stage anew (about
# 4 GB) before the images it replaces are pruned.
bash scripts/need-disk.sh 4 "$(docker info -f '{{.DockerRootDir}}')" "building the images"
variant=cpu
only=stage,airflow,postgres,redis
[ "${SKIP_AIRFLOW_IMAGE:-0}" = 1 ] && only=stage
while [ $# -gt 0 ]; do
    case "$1" in
        --variant) variant=${2:?--variant needs cpu or gpu}; shift 2 ;;
        --only) only=${2:?--only needs a comma list of stage, airflow, postgres, redis}; shift 2 ;;
        *) echo "error: unknown argument $1; usage: $0 [--variant cpu|gpu] [--only LIST]" >&2
           exit 2 ;;
    esac
done
wanted() { [[ ",$only," == *",$1,"* ]]; }

local_base=inferbench/local-base:bookworm
base_for() {  # base_for UPSTREAM: the upstream image where it can be had, else the local base
    if docker image inspect "$1" >/dev/null 2>&1 || timeout 60 docker pull -q "$1" >/dev/null 2>&1; then
        echo "$1"
    else
        echo "cannot pull $1; using the local base image instead" >&2
        bash images/base/build-local-base.sh "$local_base" >&2
        echo "$local_base"
    fi
}

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

build() {  # build TAG DOCKERFILE BASE [extra docker build args]
    local tag=$1 file=$2 base=$3; shift 3
    echo "building $tag from $base"
    # The classic builder: Debian's daemon may come without the buildx plugin.
    docker_build() {
        DOCKER_BUILDKIT=0 docker build -q -f "$file" --build-arg BASE_IMAGE="$base" \
            --build-arg PIP_INDEX_URL="$index" "$@" . >/dev/null
    }
    docker_build -t "$tag" "$@"
    docker image inspect -f "{{index .RepoTags 0}} {{.Size}}" "$tag" \
        | awk '{printf "%s: %.0f MB\n", $1, $2/1e6}'
    # A multi-stage file's build stage is tagged too (TAG-build; the layer cache makes it
    # instant): untagged, it would be pruned below with the layers the next build reuses.
    if grep -q '^FROM .* AS build$' "$file"; then
        docker_build -t "$tag-build" --target build "$@"
    fi
}
trap 'rm -rf images/.build' EXIT
if wanted stage || wanted airflow; then
    python_base=$(base_for python:3.11-slim-bookworm)
    if wanted stage; then
        build "inferbench/stage:$variant" images/stage/Dockerfile "$python_base" \
            --build-arg EXTRAS="$extras"
    fi
    if wanted airflow; then
        build inferbench/airflow:latest images/airflow/Dockerfile "$python_base"
    fi
fi
if wanted postgres; then
    build inferbench/postgres:latest images/postgres/Dockerfile "$(base_for postgres:16-bookworm)"
fi
if wanted redis; then
    build inferbench/redis:latest images/redis/Dockerfile "$(base_for redis:7-bookworm)"
fi
# Each rebuild leaves the image it replaced untagged (gigabytes each, for good: nothing
# refers to them); those of this project's Dockerfiles (their label) go, other images stay.
docker image prune -f --filter label=org.inferbench.image >/dev/null
