#!/usr/bin/env bash
# Installs prometheus and promtool from Debian's packages when they are missing; the tests run a
# real Prometheus on loopback and promtool over the charts' rules.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "prometheus/promtool missing; run as root or: sudo apt-get install prometheus" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a system service where systemd runs; the tests start their own instance.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
promtool --version | head -1
