"""A helm post-renderer for the local control plane only: the release's Karpenter NodePools name the
KWOKNodeClass instead of their EC2NodeClass, since Karpenter runs there with its kwok cloud provider
(nchart.localcluster.controllers) and a NodePool's nodeClassRef group and kind cannot change later.
Nothing else in the release changes; the EC2NodeClasses are installed as rendered.

    helm install ... --post-renderer PYTHON --post-renderer-args=-m \\
        --post-renderer-args=nchart.localcluster.kwok_nodepools
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from .addon_objects import KWOK_NODE_CLASS


def point_at_kwok(document: Any) -> Any:
    if isinstance(document, dict) and document.get("kind") == "NodePool":
        document["spec"]["template"]["spec"]["nodeClassRef"] = dict(KWOK_NODE_CLASS)
    return document


def main() -> int:
    documents = [point_at_kwok(d) for d in yaml.safe_load_all(sys.stdin) if d is not None]
    yaml.safe_dump_all(documents, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
