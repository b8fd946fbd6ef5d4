"""usage-map: the extender's NEURON_DEV_USAGE_MAP / NEURON_CORE_USAGE_MAP node annotations mark no more in
use than the live pods on the node hold (stale after a reinstall, aws-neuron-sdk#1300)."""

from __future__ import annotations

import datetime as dt
import math

from ...core.names import USAGE_MAPS
from ..findings import Finding, Severity
from ..state import (
    ClusterState,
    is_live,
    meta_of,
    name_of,
    namespace_of,
    neuron_nodes,
    neuron_requests,
)


def _in_use(value: str) -> int | None:
    entries = [e.strip().lower() for e in value.split(",") if e.strip()]
    if not entries or any(e not in ("true", "false") for e in entries):
        return None
    return entries.count("true")


def check_usage_maps(state: ClusterState, now: dt.datetime) -> list[Finding]:
    nodes = neuron_nodes(state)
    findings = []
    for node in nodes:
        annotations = meta_of(node.node).get("annotations") or {}
        maps = {key: annotations[key] for key in USAGE_MAPS if key in annotations}
        if not maps:
            continue
        live = [
            p
            for p in state.pods
            if (p.get("spec") or {}).get("nodeName") == node.name and is_live(p) and any(neuron_requests(p["spec"]))
        ]
        devices = sum(neuron_requests(p["spec"])[0] for p in live)
        cores = sum(neuron_requests(p["spec"])[1] for p in live)
        per_chip = node.instance.cores_per_chip
        held = {
            "NEURON_DEV_USAGE_MAP": devices + math.ceil(cores / per_chip),
            "NEURON_CORE_USAGE_MAP": cores + devices * per_chip,
        }
        clear = f"kubectl annotate node {node.name} {' '.join(f'{k}-' for k in USAGE_MAPS)}"
        for key, value in maps.items():
            in_use = _in_use(str(value))
            unit = "devices" if key == "NEURON_DEV_USAGE_MAP" else "cores"
            if in_use is None:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        "usage-map",
                        f"Node/{node.name}",
                        f"{key} is {value!r}, not a list of true/false: the extender's state cannot be checked",
                        clear if not live else f"kubectl drain {node.name} --ignore-daemonsets; {clear}",
                    )
                )
            elif in_use > held[key]:
                holders = ", ".join(f"{namespace_of(p)}/{name_of(p)}" for p in live) or "none"
                if live:
                    fix = (
                        f"kubectl drain {node.name} --ignore-daemonsets --delete-emptydir-data && {clear} && "
                        f"kubectl uncordon {node.name}"
                    )
                else:
                    fix = clear
                findings.append(
                    Finding(
                        Severity.ERROR,
                        "usage-map",
                        f"Node/{node.name}",
                        f"{key} marks {in_use} {unit} in use, but live pods on the node hold {held[key]} "
                        f"(pods: {holders}): stale after pods went away, and the extender will not place "
                        f"new pods on those {unit} (aws-neuron-sdk#1300)",
                        fix,
                    )
                )
    return findings
