#!/usr/bin/env bash
# Builds the pinned upstream Go tools into ./bin from the Go module proxy.
# A tool already built at the pinned version (and flags) is reused.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/go-tools.sh
source "$repo_root/scripts/lib/go-tools.sh"
bin_dir="$repo_root/bin"
mkdir -p "$bin_dir"

# The two Helm majors the project supports (README, "Supported versions"): bin/helm is the newest
# Helm 3, bin/helm4 Helm 4; nchart and the tests use HELM_BIN when it is set, else bin/helm.
helm_version=v3.22.0
# helm's own release build stamps its version and the Kubernetes version of its
# client-go (v0.37 -> 1.37); without them `helm version` says "v3.22" and the
# default capabilities claim Kubernetes 1.20, which breaks kubeVersion checks.
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=37"
done
# Helm 4 reads its default Kubernetes version from its client-go's build info; only its own
# version needs stamping.
helm4_version=v4.3.1
helm4_ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$helm4_version -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

# name | module path | version | ldflags
tools=(
  "helm|helm.sh/helm/v3/cmd/helm|$helm_version|$helm_ldflags"
  "helm4|helm.sh/helm/v4/cmd/helm|$helm4_version|$helm4_ldflags"
  "kubeconform|github.com/yannh/kubeconform/cmd/kubeconform|v0.7.0|-s -w"
  "helm-docs|github.com/norwoodj/helm-docs/cmd/helm-docs|v1.14.2|-s -w"
  # values.schema.json from the `# @schema` annotations and helm-docs comments in values.yaml.
  "helm-values-schema-json|github.com/losisin/helm-values-schema-json/v2|v2.2.1|-s -w"
  # The policy checker `nchart lint` runs over every render (security context, probes, resources).
  "kube-score|github.com/zegl/kube-score/cmd/kube-score|v1.20.0|-s -w"
  # Checks .github/workflows (with shellcheck from Debian over their run: scripts).
  "actionlint|github.com/rhysd/actionlint/cmd/actionlint|v1.7.12|-s -w"
  # Decides offline, from the rendered NetworkPolicies alone, which pod may reach which (the
  # connectivity matrix test); it evaluates policies as the API defines them, without a CNI.
  "cyclonus|github.com/mattfenwick/cyclonus/cmd/cyclonus|v0.5.6|-s -w"
)

# terraform: the one on PATH when there is one (>= 1.5); otherwise the last MPL release, which the
# Go module proxy can build (later releases have replace directives `go install` refuses).
terraform_ok() {
  local version
  version=$("$1" version -json 2>/dev/null | sed -n 's/.*"terraform_version": *"\([0-9.]*\)".*/\1/p')
  [[ -n "$version" ]] && printf '%s\n1.5.0\n' "$version" | sort -V -C -r
}
if ! { command -v terraform >/dev/null && terraform_ok "$(command -v terraform)"; }; then
  tools+=("terraform|github.com/hashicorp/terraform|v1.5.7|-s -w")
fi

for entry in "${tools[@]}"; do
  IFS='|' read -r name module version ldflags <<<"$entry"
  want="$version $ldflags"
  if tool_current "$bin_dir" "$name" "$want"; then
    continue
  fi
  echo "building $name $version" >&2
  started=$SECONDS
  go_build_pinned "$bin_dir" "$name" "$module" "$version" "$ldflags"
  echo "$want" >"$bin_dir/.$name.stamp"
  echo "built $name $version in $((SECONDS - started))s" >&2
done
