#!/bin/bash
# Make the Debian base image of autoroi's images on a machine that reaches no
# image registry, only Debian's package archive: debootstrap (minbase) into a
# folder, trim it the way Debian's own "-slim" images are trimmed (no docs,
# man pages or locales; apt keeps no caches), then `docker import` it.
#
#   containers/bootstrap-base.sh [TAG]      prints the tag it made or found
#
# The default TAG is autoroi-bootstrap/debian:<debian_version>-slim, the point
# release the archive gave (never the public name debian:...: this is not
# Debian's published image, only built the same way). `make images` passes it
# to every Dockerfile as BASE_IMAGE; CI builds the same Dockerfiles FROM the
# public debian:<version>-slim instead.
#
# Environment: DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian),
# DOCKER (/usr/bin/docker). Needs root (debootstrap) and a running dockerd.
set -euo pipefail

suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
docker="${DOCKER:-/usr/bin/docker}"
tag="${1:-}"

if [[ -n "${tag}" ]] && "${docker}" image inspect "${tag}" >/dev/null 2>&1; then
    echo "${tag}"
    exit 0
fi
if [[ -z "${tag}" ]]; then
    existing="$("${docker}" images --format '{{.Repository}}:{{.Tag}}' autoroi-bootstrap/debian | sort -V | tail -n 1)"
    if [[ -n "${existing}" && "${existing}" == *"-slim" ]]; then
        echo "${existing}"
        exit 0
    fi
fi

# the work folder lives beside nothing else and goes away whatever happens
work="$(mktemp -d /var/tmp/autoroi-rootfs.XXXXXX)"
trap 'rm -rf --one-file-system "${work}"' EXIT
root="${work}/rootfs"

echo "bootstrap-base: debootstrap --variant=minbase ${suite} from ${mirror}" >&2
debootstrap --variant=minbase --components=main "${suite}" "${root}" "${mirror}" >"${work}/debootstrap.log" 2>&1 \
    || { tail -n 30 "${work}/debootstrap.log" >&2; exit 1; }

# what Debian's -slim images drop, and keep dropping on every later apt-get install
cat >"${root}/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"${root}/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"${root}/etc/apt/apt.conf.d/docker-no-recommends"
printf 'Acquire::Languages "none";\n' >"${root}/etc/apt/apt.conf.d/docker-no-languages"
cat >"${root}/etc/apt/sources.list" <<EOF
deb ${mirror} ${suite} main
deb ${mirror} ${suite}-updates main
deb http://deb.debian.org/debian-security ${suite}-security main
EOF
find "${root}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "${root}/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "${root}/usr/share/man/"* "${root}/usr/share/info/"* "${root}/usr/share/lintian" "${root}/usr/share/linda"
find "${root}/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "${root}/var/lib/apt/lists/"* "${root}/var/cache/apt/"*.bin "${root}/var/cache/apt/archives/"*.deb \
    "${root}/var/log/"*.log "${root}/var/log/apt/"* "${root}/tmp/"* "${root}/var/tmp/"*
# a machine id and resolver of the build host must not travel
: >"${root}/etc/machine-id"
rm -f "${root}/etc/resolv.conf" "${root}/etc/hostname"

version="$(cut -d. -f1,2 "${root}/etc/debian_version")"
tag="${tag:-autoroi-bootstrap/debian:${version}-slim}"
echo "bootstrap-base: docker import as ${tag}" >&2
tar --numeric-owner --xattrs -C "${root}" -c . \
    | "${docker}" import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --message "debootstrap --variant=minbase ${suite} (${mirror}), trimmed like debian:-slim" \
        - "${tag}" >/dev/null
echo "${tag}"
