#!/usr/bin/env bash
# Builds the local Kubernetes control plane the end-to-end tests run on, pinned, into ./bin:
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (k8s.io/kubernetes),
# etcd and kwok, and the platform add-ons' controllers (terraform/addons.yaml, `local`: the Prometheus
# operator, KEDA, Karpenter with its kwok provider), all from the Go module proxy. A binary already built at the pinned version is
# reused. k8s.io/kubernetes refuses `go install` (replace directives to its staging folder), so it is
# built from its module source with the staging modules taken from the proxy instead.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$repo_root/bin"
work_dir="$repo_root/build/cluster-tools"
mkdir -p "$bin_dir" "$work_dir"
# shellcheck source=lib/go-tools.sh
source "$repo_root/scripts/lib/go-tools.sh"

kubernetes_version=v1.34.2
staging_version=v0.34.2 # k8s.io/<staging module> tags that go with kubernetes_version
etcd_version=v3.6.5
kwok_version=v0.7.0

proxy_hint() {
  echo "install-cluster-tools: could not fetch $1 from the Go module proxy ($(go env GOPROXY))." >&2
  echo "  The local control plane needs it; check that the proxy is reachable and serves $1." >&2
  exit 1
}

timed() {
  local label=$1 started=$SECONDS
  shift
  echo "install-cluster-tools: $label ..." >&2
  "$@"
  echo "install-cluster-tools: $label took $((SECONDS - started))s" >&2
}

build_etcd() {
  go_build_pinned "$bin_dir" etcd go.etcd.io/etcd/server/v3 "$etcd_version" "-s -w" ||
    proxy_hint "go.etcd.io/etcd/server/v3@$etcd_version"
}

build_kwok() {
  go_build_pinned "$bin_dir" kwok sigs.k8s.io/kwok/cmd/kwok "$kwok_version" "-s -w" sigs.k8s.io/kwok ||
    proxy_hint "sigs.k8s.io/kwok@$kwok_version"
}

started=$SECONDS
kubernetes_binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
all_current=true
for name in "${kubernetes_binaries[@]}"; do
  tool_current "$bin_dir" "$name" "$kubernetes_version" || all_current=false
done
if [[ $all_current == false ]]; then
  timed "building ${kubernetes_binaries[*]} $kubernetes_version (cold: 8-15 min on 2 cores)" \
    build_kubernetes "$kubernetes_version" "$staging_version" "$bin_dir" "$work_dir" ||
    proxy_hint "k8s.io/kubernetes@$kubernetes_version and its staging modules $staging_version"
  for name in "${kubernetes_binaries[@]}"; do echo "$kubernetes_version" >"$bin_dir/.$name.stamp"; done
fi
if ! tool_current "$bin_dir" etcd "$etcd_version"; then
  timed "building etcd $etcd_version" build_etcd
  echo "$etcd_version" >"$bin_dir/.etcd.stamp"
fi
if ! tool_current "$bin_dir" kwok "$kwok_version"; then
  timed "building kwok $kwok_version" build_kwok
  echo "$kwok_version" >"$bin_dir/.kwok.stamp"
fi
# The add-ons' controllers, at the versions terraform/addons.yaml pins (the same releases terraform
# installs on EKS).
python=python3
[[ -x "$repo_root/.venv/bin/python" ]] && python="$repo_root/.venv/bin/python"
controller_builds=$("$python" "$repo_root/scripts/local-controller-builds.py")
while read -r module version tags loopback binaries; do
  read -r -a entries <<<"$binaries"
  # What the binaries were built from and how: a change to any rebuilds them.
  stamp="$module@$version tags=$tags loopback=$loopback"
  stale=false
  for entry in "${entries[@]}"; do
    tool_current "$bin_dir" "${entry%%=*}" "$stamp" || stale=true
  done
  [[ $stale == false ]] && continue
  names=$(printf '%s ' "${entries[@]%%=*}")
  timed "building ${names% } from $module@$version (cold: 1-10 min on 2 cores)" \
    build_module_binaries "$bin_dir" "$work_dir" "$module" "$version" "$tags" "$loopback" "${entries[@]}" ||
    proxy_hint "$module@$version"
  for entry in "${entries[@]}"; do echo "$stamp" >"$bin_dir/.${entry%%=*}.stamp"; done
done <<<"$controller_builds"
echo "install-cluster-tools: control-plane binaries ready in bin/ ($((SECONDS - started))s)" >&2
