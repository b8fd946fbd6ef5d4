"""`nchart doctor --fix`: clearing stale usage maps, only on nodes where no live pod holds Neuron resources."""

from __future__ import annotations

from typing import Any

from ..core.names import USAGE_MAPS
from .findings import Finding
from .state import ClusterState, is_live, neuron_requests


def clearable_usage_maps(state: ClusterState, findings: list[Finding]) -> list[str]:
    """Nodes whose stale usage maps `--fix` may clear: no live pod there holds Neuron resources."""
    stale = {f.object.removeprefix("Node/") for f in findings if f.check == "usage-map"}
    busy = {
        (p.get("spec") or {}).get("nodeName")
        for p in state.pods
        if is_live(p) and any(neuron_requests(p.get("spec") or {}))
    }
    return sorted(stale - busy)


def clear_usage_maps(api_client: Any, nodes: list[str]) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    for node in nodes:
        core.patch_node(node, {"metadata": {"annotations": dict.fromkeys(USAGE_MAPS)}})
