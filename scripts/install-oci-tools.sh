#!/usr/bin/env bash
# The container tools the image build and the release test use, from Debian's packages: podman (and
# buildah, skopeo, umoci, runc beside it), debootstrap for a base image without a registry, Debian's
# docker-registry for a local OCI registry, and shellcheck (actionlint runs it over workflow scripts).
set -euo pipefail

packages=(podman buildah skopeo umoci runc debootstrap docker-registry shellcheck)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "missing: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
started=$SECONDS
echo "installing ${missing[*]} from Debian ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The registry package starts a system service where systemd runs; the tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
echo "container tools installed in $((SECONDS - started))s: $(podman --version)" >&2
