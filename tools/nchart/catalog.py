"""The Neuron instance catalog (catalog.yaml) and instance-name resolution."""

from __future__ import annotations

import dataclasses
import difflib
import functools
from importlib import resources
from typing import Any

import yaml

from .errors import UsageError


@dataclasses.dataclass(frozen=True)
class InstanceType:
    name: str
    family: str
    chips: int
    cores_per_chip: int
    core_version: str
    device_memory_gib: int
    vcpu: int
    host_memory_gib: int
    # Device counts one pod may request; None means any count up to `chips`.
    allowed_device_counts: tuple[int, ...] | None = None

    @property
    def cores(self) -> int:
        return self.chips * self.cores_per_chip

    @property
    def slug(self) -> str:
        """The name with a dash, as accepted on the command line (inf2-24xlarge)."""
        return self.name.replace(".", "-")

    def as_values(self) -> dict[str, Any]:
        """The facts the charts read from global.neuron.instance."""
        return {
            "type": self.name,
            "family": self.family,
            "chips": self.chips,
            "coresPerChip": self.cores_per_chip,
            "cores": self.cores,
            "coreVersion": self.core_version,
            "deviceMemoryGiB": self.device_memory_gib,
            "vcpu": self.vcpu,
            "hostMemoryGiB": self.host_memory_gib,
            "allowedDeviceCounts": list(self.allowed_device_counts) if self.allowed_device_counts else None,
        }


@functools.lru_cache(maxsize=1)
def load_catalog() -> dict[str, InstanceType]:
    text = resources.files(__package__).joinpath("catalog.yaml").read_text(encoding="utf-8")
    raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["instances"]
    catalog = {}
    for name, facts in raw.items():
        allowed = facts.get("allowedDeviceCounts")
        catalog[name] = InstanceType(
            name=name,
            family=facts["family"],
            chips=facts["chips"],
            cores_per_chip=facts["coresPerChip"],
            core_version=facts["coreVersion"],
            device_memory_gib=facts["deviceMemoryGiB"],
            vcpu=facts["vcpu"],
            host_memory_gib=facts["hostMemoryGiB"],
            allowed_device_counts=tuple(allowed) if allowed else None,
        )
    return catalog


def normalise_instance_name(name: str) -> str:
    """inf2-24xlarge, INF2.24XLARGE and inf2_24xlarge all mean inf2.24xlarge."""
    name = name.strip().lower().replace("_", "-")
    family, sep, size = name.partition("-")
    if sep and "." not in name:
        return f"{family}.{size}"
    return name


def resolve_instance(name: str) -> InstanceType:
    catalog = load_catalog()
    wanted = normalise_instance_name(name)
    if wanted in catalog:
        return catalog[wanted]
    choices = difflib.get_close_matches(wanted, list(catalog), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(choices)}?" if choices else ""
    raise UsageError(f"unknown instance type {name!r}.{hint} Known Neuron instance types: {', '.join(catalog)}")
