#!/usr/bin/env bash
# Builds the model server image (the Containerfile's cpu target by default) with podman, from a base
# image made here with debootstrap: no container registry needed. Layers are cached between runs, and
# the Python requirements come from the wheelhouse build/wheels (which `make install-serving` fills
# too), so torch is downloaded once per machine.
#
#   scripts/build-image.sh [TARGET]      prints the image reference on stdout
set -euo pipefail

target=${1:-cpu}
repo_root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/oci.sh
source "$repo_root/scripts/lib/oci.sh"
state_dir="$repo_root/build/oci"
oci_setup "$state_dir"

case "$target" in
  cpu | cuda | neuron-standin | pod-usage-exporter) ;;
  neuron)
    echo "build-image: the neuron target builds FROM the Neuron DLC (public.ecr.aws, see Containerfile);" \
      "where that registry is reachable: podman build --target neuron ." >&2
    exit 2
    ;;
  *)
    echo "build-image: unknown target '$target' (cpu, cuda, neuron, neuron-standin, pod-usage-exporter)" >&2
    exit 2
    ;;
esac

# The version the chart expects: the serving chart's appVersion (the release pipeline tags the same).
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$repo_root/charts/sd21-serving/Chart.yaml")
image="localhost/eks-neuron/sd21-serving:$version-$target"
if [[ "$target" == pod-usage-exporter ]]; then
  # Its own image, at the same release version (neuron-monitor.podUsage.image.tag).
  image="localhost/eks-neuron/neuron-pod-usage-exporter:$version"
fi
base="localhost/eks-neuron/debian:bookworm"
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}

if ! podman image exists "$base"; then
  started=$SECONDS
  echo "build-image: making the base image $base with debootstrap from $mirror ..." >&2
  rootfs=$(mktemp -d "$state_dir/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$state_dir/debootstrap.log" 2>&1 ||
    { tail -20 "$state_dir/debootstrap.log" >&2; exit 1; }
  tar -C "$rootfs" -c . | podman import --quiet - "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "build-image: base image ready in $((SECONDS - started))s" >&2
fi

ca_bundle=$(oci_ca_bundle) || { echo "build-image: no CA bundle found" >&2; exit 1; }
wheels="$repo_root/build/wheels"
# Wheels for the image's Python (Debian bookworm's 3.11), whatever the host's is.
"$repo_root/scripts/download-server-wheels.sh" "$wheels" 3.11
revision=$(git -C "$repo_root" rev-parse HEAD 2>/dev/null || echo unknown)
started=$SECONDS
echo "build-image: building $image (target $target) ..." >&2
podman build --network host --layers --target "$target" \
  --build-arg BASE_IMAGE="$base" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg WHEELS_DIR=/wheels \
  --volume "$wheels:/wheels:ro" \
  --secret id=pipcert,src="$ca_bundle" \
  --tag "$image" \
  --file "$repo_root/Containerfile" "$repo_root" >"$state_dir/build-$target.log" 2>&1 ||
  { tail -40 "$state_dir/build-$target.log" >&2; exit 1; }
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "build-image: $image built in $((SECONDS - started))s, $((size / 1000000)) MB" >&2
echo "$image"
