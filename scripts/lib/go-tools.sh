# Shared by the install scripts: pinned Go tools built into bin/, reused when already built.
# shellcheck shell=bash

# tool_current BIN_DIR NAME WANT: the binary exists and was built with exactly WANT.
tool_current() {
  [[ -x "$1/$2" && -f "$1/.$2.stamp" && "$(cat "$1/.$2.stamp")" == "$3" ]]
}

# go_build_pinned BIN_DIR NAME PACKAGE VERSION LDFLAGS [MODULE]: `go install PACKAGE@VERSION`, or, where
# the Go module proxy refuses that (modules with replace directives, or whose version list it does not
# serve), the same package built inside a throwaway module that requires MODULE@VERSION.
go_build_pinned() {
  local bin_dir=$1 name=$2 package=$3 version=$4 ldflags=$5 module=${6:-$3}
  # go install names the binary after the package (the element before a /vN suffix), which two
  # tools may share (Helm 3 and Helm 4 are both cmd/helm): it installs into a folder of its own,
  # and the binary moves to NAME.
  local built=${package##*/} gobin
  if [[ $built =~ ^v[0-9]+$ ]]; then
    built=${package%/*}
    built=${built##*/}
  fi
  gobin=$(mktemp -d)
  if CGO_ENABLED=0 GOBIN="$gobin" GOFLAGS="-buildvcs=false -trimpath" \
    go install -ldflags "$ldflags" "$package@$version" 2>/dev/null; then
    mv "$gobin/$built" "$bin_dir/$name"
    rm -rf "$gobin"
    return 0
  fi
  rm -rf "$gobin"
  local wrapper
  wrapper=$(mktemp -d)
  (
    cd "$wrapper" || exit 1
    go mod init tool-build >/dev/null 2>&1
    if ! go get "$module@$version" >/dev/null 2>&1; then
      echo "could not fetch $module@$version from the Go module proxy ($(go env GOPROXY))" >&2
      exit 1
    fi
    CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "$ldflags" -o "$bin_dir/$name" "$package"
  )
  local status=$?
  rm -rf "$wrapper"
  return $status
}

# module_tree MODULE VERSION TREE: a writable copy of MODULE@VERSION's source at TREE, without go.work
# (else Go runs in workspace mode); left as it is once TREE/.prepared exists (the caller's edits done).
# Fails when the Go module proxy does not serve it.
module_tree() {
  local module=$1 version=$2 tree=$3 source
  [[ -f "$tree/.prepared" ]] && return 0
  source=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$source" ]] || return 1
  rm -rf "$tree"
  cp -r "$source" "$tree"
  chmod -R u+w "$tree"
  rm -f "$tree/go.work" "$tree/go.work.sum"
}

# build_module_binaries BIN_DIR WORK_DIR MODULE VERSION TAGS LOOPBACK NAME=PACKAGE...: builds each PACKAGE (a path
# inside MODULE, e.g. ./cmd/operator) into BIN_DIR/NAME from a copy of the module's source, as its own
# project builds it: its go.mod is the main module, so its replace directives hold (`go install` refuses
# modules that have any). Replaces that point at folders of the same repository (nested modules, which
# module downloads do not contain) are pointed at those modules' releases of the same version instead.
# TAGS: comma-separated Go build tags (or -). LOOPBACK: comma-separated files (or -) whose
# `fmt.Sprintf(":%...` listen addresses, every interface with no flag to change it, become 127.0.0.1;
# a file without one fails the build (upstream moved).
build_module_binaries() {
  local bin_dir=$1 work_dir=$2 module=$3 version=$4 tags=$5 loopback=$6
  shift 6
  [[ $tags == - ]] && tags=
  local tree="$work_dir/${module//\//_}@$version"
  if ! module_tree "$module" "$version" "$tree"; then
    echo "could not fetch $module@$version from the Go module proxy ($(go env GOPROXY))" >&2
    return 1
  fi
  if [[ ! -f "$tree/.prepared" ]]; then
    sed -i -E "s#^([[:space:]]*)(replace[[:space:]]+)?([^[:space:]]+) => \./[^[:space:]]+\$#\1\2\3 => \3 $version#" "$tree/go.mod"
    local file
    local -a files=()
    [[ $loopback != - ]] && IFS=, read -r -a files <<<"$loopback"
    for file in "${files[@]}"; do
      if ! grep -q 'fmt.Sprintf(":%' "$tree/$file"; then
        echo "$module@$version: $file no longer binds with fmt.Sprintf(\":%...\"); update local.loopback in terraform/addons.yaml" >&2
        return 1
      fi
      sed -i 's/fmt\.Sprintf(":%/fmt.Sprintf("127.0.0.1:%/g' "$tree/$file"
    done
    touch "$tree/.prepared"
  fi
  local entry
  for entry in "$@"; do
    (
      cd "$tree" &&
        GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 go build -buildvcs=false -trimpath -tags "$tags" -ldflags "-s -w" \
          -o "$bin_dir/${entry%%=*}" "${entry#*=}"
    ) || return 1
  done
}

# build_kubernetes VERSION STAGING_VERSION BIN_DIR WORK_DIR: kube-apiserver, kube-controller-manager,
# kube-scheduler and kubectl of k8s.io/kubernetes VERSION into BIN_DIR. k8s.io/kubernetes refuses
# `go install` (replace directives to its staging folder), so it is built from its module source with
# the staging modules (k8s.io/<module> STAGING_VERSION) taken from the proxy instead. Fails when the
# proxy does not serve them.
build_kubernetes() {
  local version=$1 staging_version=$2 bin_dir=$3 work_dir=$4
  local tree="$work_dir/kubernetes-$version"
  module_tree k8s.io/kubernetes "$version" "$tree" || return 1
  if [[ ! -f "$tree/.prepared" ]]; then
    # The staging replaces point at the published modules instead of folders the download lacks.
    sed -i -E "s#^([[:space:]]*k8s\.io/[^ ]+) => \./staging/src/k8s\.io/[^ ]+\$#\1 => \1 $staging_version#" "$tree/go.mod"
    touch "$tree/.prepared"
  fi
  local ldflags="-s -w" package
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    # Without these the server reports v0.0.0 and charts' kubeVersion constraints refuse to install.
    ldflags+=" -X $package.gitVersion=$version -X $package.gitMajor=1"
    ldflags+=" -X $package.gitMinor=$(echo "$version" | cut -d. -f2) -X $package.gitTreeState=clean"
  done
  mkdir -p "$bin_dir"
  (
    cd "$tree" || exit 1
    # One `go build` for all four: they share most packages, so each is compiled once.
    GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin_dir/" \
      ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubectl
  )
}
