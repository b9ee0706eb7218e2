#!/usr/bin/env bash
# Makes a base image for the Dockerfile from Debian packages, for machines that reach a Debian
# mirror but no container registry (python:3.11-slim cannot be pulled there). The result,
# localhost/ttc-base:bookworm, is what `make image` passes as BASE; elsewhere the Dockerfile's
# default public base is used and this script is not needed.
# Needs root, debootstrap and podman (Debian: apt-get install debootstrap podman runc).
set -euo pipefail
TAG=${1:-localhost/ttc-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS=$(mktemp -d /tmp/ttc-base.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR"
# The CA certificates this host adds to the system's (a TLS-inspecting proxy's, a site's own) are
# trusted inside too, and pip is pointed at the system store, so that builds from this base reach
# PyPI wherever the host does.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" update-ca-certificates
fi
# A virtual environment first on PATH gives `python` and `pip` as the public python images have
# them (Debian's own Python refuses pip installs into the system, PEP 668).
chroot "$ROOTFS" python3 -m venv /opt/python
chroot "$ROOTFS" /opt/python/bin/pip install -q --upgrade pip
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | podman import \
  --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' - "$TAG"
echo "$TAG"
