#!/usr/bin/env python3
"""The model server's requirements, one per line, from serving/pyproject.toml's dependencies (their
one source), for the server image's install layer and the wheelhouse. `--variant neuron` replaces the
pins of [tool.eks-neuron.neuron-image] (the AWS sample's library versions) and adds the ones the
dependencies lack. `--without NAME` leaves a requirement out (the Neuron image keeps the base image's
torch)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "serving" / "pyproject.toml"


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--without", action="append", default=[], metavar="NAME", help="Leave this one out.")
    parser.add_argument("--variant", choices=["default", "neuron"], default="default", help="Which image's pins.")
    parser.add_argument("--build-system", action="store_true", help="The package's build requirements instead.")
    args = parser.parse_args()
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    if args.build_system:
        print("\n".join(pyproject["build-system"]["requires"]))
        return
    project = pyproject["project"]
    requirements = list(project["dependencies"])
    if args.variant == "neuron":
        pins = {requirement_name(r): r for r in pyproject["tool"]["eks-neuron"]["neuron-image"]["pins"]}
        requirements = [pins.pop(requirement_name(r), r) for r in requirements] + list(pins.values())
    left_out = {name.lower() for name in args.without}
    unknown = left_out - {requirement_name(r) for r in requirements}
    if unknown:
        sys.exit(f"serving-requirements: --without {', '.join(sorted(unknown))}: not among the server's dependencies")
    for requirement in requirements:
        if requirement_name(requirement) not in left_out:
            print(requirement)


if __name__ == "__main__":
    main()
