#!/usr/bin/env bash
# Builds a second Kubernetes minor's control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) into bin/kubernetes-VERSION/, pinned, from the Go module proxy; reused when
# already built. The local control plane runs it when EKS_NEURON_KUBERNETES_BIN names that folder
# (README, "Supported versions"); etcd and kwok stay bin/'s.
#
#   scripts/install-kubernetes.sh VERSION STAGING_VERSION     e.g. v1.37.2 v0.37.2
set -euo pipefail

version=${1:?usage: install-kubernetes.sh VERSION STAGING_VERSION}
staging_version=${2:?usage: install-kubernetes.sh VERSION STAGING_VERSION}
repo_root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/go-tools.sh
source "$repo_root/scripts/lib/go-tools.sh"
bin_dir="$repo_root/bin/kubernetes-$version"
work_dir="$repo_root/build/cluster-tools"
mkdir -p "$work_dir"

binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
current=true
for name in "${binaries[@]}"; do
  tool_current "$bin_dir" "$name" "$version" || current=false
done
if [[ $current == true ]]; then
  exit 0
fi
started=$SECONDS
echo "install-kubernetes: building ${binaries[*]} $version into $bin_dir (cold: 8-15 min on 2 cores) ..." >&2
if ! build_kubernetes "$version" "$staging_version" "$bin_dir" "$work_dir"; then
  echo "install-kubernetes: could not build k8s.io/kubernetes@$version with the staging modules $staging_version" \
    "from the Go module proxy ($(go env GOPROXY))" >&2
  exit 1
fi
for name in "${binaries[@]}"; do echo "$version" >"$bin_dir/.$name.stamp"; done
echo "install-kubernetes: $version built in $((SECONDS - started))s" >&2
