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
  if CGO_ENABLED=0 GOBIN="$bin_dir" GOFLAGS="-buildvcs=false -trimpath" \
    go install -ldflags "$ldflags" "$package@$version" 2>/dev/null; then
    return 0
  fi
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
