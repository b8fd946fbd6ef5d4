#!/usr/bin/env python3
"""Prints what scripts/install-cluster-tools.sh builds for the add-ons' controllers on the local control
plane (terraform/addons.yaml, `local`), one line per build: MODULE VERSION TAGS LOOPBACK NAME=PACKAGE...
TAGS being the comma-separated Go build tags and LOOPBACK the comma-separated source files whose
listeners the build binds to 127.0.0.1, each `-` when there are none."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from nchart.core.addons import local_builds  # noqa: E402
from nchart.errors import NchartError  # noqa: E402


def main() -> int:
    try:
        builds = local_builds(ROOT)
    except NchartError as error:
        print(f"local-controller-builds: {error}", file=sys.stderr)
        return 2
    for build in builds:
        binaries = " ".join(f"{name}={package}" for name, package in build.binaries)
        tags = ",".join(build.tags) or "-"
        loopback = ",".join(build.loopback) or "-"
        print(f"{build.module} {build.version} {tags} {loopback} {binaries}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
