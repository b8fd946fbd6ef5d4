"""The catalog's facts as the charts read them: the umbrella's files/neuron-instance-types.json (device
and core counts a pod may ask for, for its admission policy) and the serving chart's
files/node-capacity.json (CPU and memory a node has for our pods, the compiler target, for its
compile Job), from catalog.yaml and sizing.py."""

from __future__ import annotations

import json
from typing import Any

from ..core.catalog import load_catalog
from ..core.project import Project
from ..core.sizing import pod_capacity
from .files import Generated, update


def instance_counts() -> dict[str, Any]:
    """Per instance type, what one pod may ask for: the device counts, the most cores (at any LNC)."""
    counts = {}
    for instance in load_catalog().values():
        configs = instance.logical_core_configs or (None,)
        most_cores = max(instance.with_lnc(lnc).cores for lnc in configs)
        devices = list(instance.allowed_device_counts or range(1, instance.chips + 1))
        counts[instance.name] = {"deviceCounts": devices, "maxCores": most_cores}
    return counts


def generate_instance_counts(project: Project, check: bool, result: Generated) -> None:
    path = project.umbrella / "files" / "neuron-instance-types.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    update(project, path, json.dumps(instance_counts(), indent=2) + "\n", check, result)


def node_capacities() -> dict[str, dict[str, Any]]:
    """Per instance type, the CPU and memory its node has for our pods (sizing.pod_capacity) and the
    compiler target: what the serving chart checks its compile Job against."""
    capacities = {}
    for instance in load_catalog().values():
        cpu_millicores, memory_mib = pod_capacity(instance)
        capacities[instance.name] = {
            "compilerTarget": instance.compiler_target,
            "podCpuMillicores": cpu_millicores,
            "podMemoryMiB": memory_mib,
        }
    return capacities


def generate_node_capacities(project: Project, check: bool, result: Generated) -> None:
    path = project.root / "charts" / "sd21-serving" / "files" / "node-capacity.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    update(project, path, json.dumps(node_capacities(), indent=2) + "\n", check, result)
