# Shared by the image scripts: podman settings these machines need, given through CONTAINERS_CONF.
# shellcheck shell=bash

# oci_setup STATE_DIR: writes STATE_DIR/containers.conf and exports CONTAINERS_CONF.
#  - podman's default ulimits exceed what some VMs allow ("setrlimit RLIMIT_NOFILE: Operation not
#    permitted"), so they are set within common hard limits;
#  - runc instead of crun, which refuses hosts with a hybrid cgroup layout.
oci_setup() {
  local state_dir=$1
  mkdir -p "$state_dir"
  cat >"$state_dir/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF="$state_dir/containers.conf"
}

# oci_ca_bundle: the host's CA bundle (TLS may be intercepted on the way to PyPI; the build gets the
# bundle as a secret for its pip steps only, never stored in the image).
oci_ca_bundle() {
  local candidate
  for candidate in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [[ -n "$candidate" && -f "$candidate" ]]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
