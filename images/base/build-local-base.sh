#!/usr/bin/env bash
# Builds a local Debian bookworm + Python 3.11 base image offline from a registry, for machines
# that cannot pull the official python image: debootstrap a minimal root file system from the
# machine's own apt mirror, then `docker import` it. Every Dockerfile in images/ takes
# `ARG BASE_IMAGE`; scripts/build-images.sh passes this image when the upstream one is out of
# reach. Usage: images/base/build-local-base.sh [TAG]   (default inferbench/local-base:bookworm)
set -euo pipefail
tag=${1:-inferbench/local-base:bookworm}

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "local base $tag already present"; exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }

# The mirror is read from this machine's apt configuration (deb822 .sources or classic
# sources.list), never written into the repository.
mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
         | grep -v security | head -n1 || true)
if [ -z "$mirror" ]; then
    mirror=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
             | grep -v security | awk '{print $2}' | head -n1 || true)
fi
[ -n "$mirror" ] || { echo "error: no apt mirror found in /etc/apt/sources.list*; add one" >&2; exit 1; }

rootfs=$(mktemp -d /tmp/inferbench-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from the machine's apt mirror into $rootfs"
# python3-venv gives `python3 -m venv`, which the Dockerfiles use on both this base and the
# official python image; ca-certificates lets pip reach the package index over TLS.
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,libpython3.11,ca-certificates,libgomp1 \
    bookworm "$rootfs" "$mirror" >/dev/null
# Lean: no apt lists, caches, docs or man pages in the image.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
       "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
