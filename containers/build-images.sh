#!/bin/bash
# Build autoroi's five images on this machine, tagged exactly as
# `autoroi compile` pins them: <kfp.image_registry>/<kind>:<git sha> (and the
# serving image as serving.image's repository with the same tag).
#
#   containers/build-images.sh [KIND ...]      (make images; default: all five)
#
# Installs Debian's docker.io and debootstrap when missing and starts dockerd
# when none answers (root; like `make system-deps`), bootstraps the Debian
# base from the package archive (containers/bootstrap-base.sh) unless
# BASE_IMAGE names one, and hands the build host's certificate bundle
# (CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt) to the downloading
# steps as a build secret. Removes this project's images of other commits and
# trims the build cache to KEEP_CACHE (8GB). Prints a table: image, size,
# build seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

docker="${DOCKER:-/usr/bin/docker}"
python="${PYTHON:-.venv/bin/python}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
kinds=("$@")
[[ ${#kinds[@]} -gt 0 ]] || kinds=(components spark trainer serving dashboard)

need=()
[[ -x "${docker}" ]] || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [[ -n "${BASE_IMAGE:-}" ]] || need+=(debootstrap)
if [[ ${#need[@]} -gt 0 ]]; then
    [[ "$(id -u)" == 0 ]] || { echo "images: need root to apt-get install ${need[*]}" >&2; exit 1; }
    echo "images: apt-get install ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${need[@]}" </dev/null >/dev/null \
        || { apt-get update -q </dev/null >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" </dev/null >/dev/null; }
fi
if ! "${docker}" info >/dev/null 2>&1; then
    [[ "$(id -u)" == 0 ]] || { echo "images: no Docker engine answers and only root can start dockerd" >&2; exit 1; }
    echo "images: starting dockerd (log: /var/log/autoroi-dockerd.log)" >&2
    setsid dockerd >/var/log/autoroi-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 60); do "${docker}" info >/dev/null 2>&1 && break; sleep 1; done
    "${docker}" info >/dev/null 2>&1 || { tail -n 20 /var/log/autoroi-dockerd.log >&2; exit 1; }
fi

mkdir -p var
base="${BASE_IMAGE:-$(containers/bootstrap-base.sh)}"
sha="$(git rev-parse HEAD)"
# the references compile pins (pipelines.run.image_refs), from the same config
mapfile -t refs < <(AUTOROI_GIT_SHA="${sha}" "${python}" - "${kinds[@]}" <<'PY'
import sys
from autoroi.config import load_config
from pipelines.run import image_refs
refs = image_refs(load_config())
print("\n".join(refs[kind] for kind in sys.argv[1:]))
PY
)
# Earlier commits' images and an unbounded build cache filled the disk of a CI
# run (62 GB after a day of commits): drop this project's images of other
# commits, keep the cache under KEEP_CACHE, and refuse early when the engine's
# disk cannot hold a build.
tidy() {
    for ref in "${refs[@]}"; do
        "${docker}" images --format '{{.Repository}}:{{.Tag}}' "${ref%:*}" | grep -v ":${sha}\$" \
            | xargs -r "${docker}" rmi >/dev/null 2>&1 || true
    done
    # a rebuild of the same tag leaves the image it replaced dangling
    "${docker}" image prune -f --filter "label=org.opencontainers.image.revision" >/dev/null
    "${docker}" builder prune -f --keep-storage "${KEEP_CACHE:-8GB}" >/dev/null
}
tidy
root="$("${docker}" info -f '{{.DockerRootDir}}')"
free_gb=$(df -P -BG "${root}" | awk 'NR == 2 {print $4 + 0}')
if (( free_gb < ${MIN_FREE_GB:-10} )); then
    echo "images: ${root} has ${free_gb} GB free; building needs ${MIN_FREE_GB:-10} GB (docker system df shows what holds it)" >&2
    exit 1
fi

secret=()
[[ -s "${ca_bundle}" ]] && secret=(--secret "id=ca_bundle,src=${ca_bundle}")

report=()
for i in "${!kinds[@]}"; do
    kind="${kinds[$i]}" ref="${refs[$i]}"
    echo "images: building ${ref} (base ${base})" >&2
    start=$(date +%s)
    DOCKER_BUILDKIT=1 "${docker}" build --progress=plain -f "containers/${kind}/Dockerfile" \
        --build-arg "BASE_IMAGE=${base}" --build-arg "GIT_SHA=${sha}" "${secret[@]}" \
        --label "org.opencontainers.image.revision=${sha}" -t "${ref}" . >"var/images-${kind}.log" 2>&1 \
        || { tail -n 40 "var/images-${kind}.log" >&2; echo "images: ${kind} failed (var/images-${kind}.log)" >&2; exit 1; }
    size=$("${docker}" image inspect -f '{{.Size}}' "${ref}")
    report+=("$(printf '%-60s %7.2f GB %5d s' "${ref}" "$(awk "BEGIN {print ${size}/1e9}")" $(($(date +%s) - start)))")
done
tidy
printf '%-60s %10s %7s\n' image size build
printf '%s\n' "${report[@]}"
