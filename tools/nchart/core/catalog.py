"""The Neuron instance catalog (catalog.yaml) and instance-name resolution."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ..errors import UsageError

# Where the logical NeuronCore config is set for the charts and nchart.
LNC_KEY = "global.neuron.logicalNeuronCoreConfig"
DEFAULT_LNC = 2
# neuronx-cc's --target for each instance family it compiles for (the compiler CLI reference: inf2,
# trn1, trn1n, trn2; a trn2u is a trn2 in an UltraServer). inf1 is neuron-cc's, not torch-neuronx's.
COMPILER_TARGETS = {"inf2": "inf2", "trn1": "trn1", "trn1n": "trn1n", "trn2": "trn2", "trn2u": "trn2"}


# NamedTuples, not dataclasses, on `nchart render`'s path: the dataclasses import (with inspect) costs ~10 ms
# of the window in which helm starts (README, Benchmark).
class InstanceType(NamedTuple):
    name: str
    family: str
    chips: int
    physical_cores_per_chip: int
    core_version: str
    device_memory_gib: int
    vcpu: int
    host_memory_gib: int
    # Device counts one pod may request; None means any count up to `chips`.
    allowed_device_counts: tuple[int, ...] | None = None
    # Logical NeuronCore configs the cores support (NeuronCore-v3); empty: LNC does not apply.
    logical_core_configs: tuple[int, ...] = ()
    # The LNC in effect (None where LNC does not apply).
    lnc: int | None = None
    # The catalog entry this name is an alias of (same hardware, e.g. SageMaker's ml.* names).
    alias_of: str | None = None

    @property
    def cores_per_chip(self) -> int:
        """NeuronCores per chip as the device plugin advertises them: physical cores / LNC."""
        return self.physical_cores_per_chip // (self.lnc or 1)

    @property
    def cores(self) -> int:
        return self.chips * self.cores_per_chip

    @property
    def compiler_target(self) -> str | None:
        return COMPILER_TARGETS.get(self.family)

    @property
    def slug(self) -> str:
        """The name with a dash, as accepted on the command line (inf2-24xlarge)."""
        return self.name.replace(".", "-")

    def with_lnc(self, lnc: Any) -> InstanceType:
        """This instance at logical NeuronCore config `lnc` (None: the default where LNC applies)."""
        if not self.logical_core_configs:
            if lnc is not None:
                raise UsageError(
                    f"{LNC_KEY}={lnc} applies to NeuronCore-v3 instances (trn2); {self.name} has {self.core_version} "
                    f"cores: remove it (--set {LNC_KEY}=null)"
                )
            return self
        value = DEFAULT_LNC if lnc is None else lnc
        if isinstance(value, bool) or value not in self.logical_core_configs:
            allowed = " or ".join(map(str, self.logical_core_configs))
            raise UsageError(f"{LNC_KEY} must be {allowed} for {self.name}, got {lnc!r}")
        return self._replace(lnc=int(value))

    def as_values(self) -> dict[str, Any]:
        """The facts the charts read from global.neuron.instance."""
        return {
            "type": self.name,
            "family": self.family,
            "compilerTarget": self.compiler_target,
            "chips": self.chips,
            "coresPerChip": self.cores_per_chip,
            "cores": self.cores,
            "coreVersion": self.core_version,
            "logicalNeuronCoreConfig": self.lnc,
            "deviceMemoryGiB": self.device_memory_gib,
            "vcpu": self.vcpu,
            "hostMemoryGiB": self.host_memory_gib,
            "allowedDeviceCounts": list(self.allowed_device_counts) if self.allowed_device_counts else None,
        }


@functools.lru_cache(maxsize=1)
def load_catalog() -> dict[str, InstanceType]:
    """Every instance-type name, aliases included, at its default LNC."""
    # Beside this module (package data); read by path: importlib.resources costs `nchart render` ~6 ms.
    text = Path(__file__).with_name("catalog.yaml").read_text(encoding="utf-8")
    raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["instances"]
    catalog = {}
    for name, facts in raw.items():
        allowed = facts.get("allowedDeviceCounts")
        instance = InstanceType(
            name=name,
            family=facts["family"],
            chips=facts["chips"],
            physical_cores_per_chip=facts["coresPerChip"],
            core_version=facts["coreVersion"],
            device_memory_gib=facts["deviceMemoryGiB"],
            vcpu=facts["vcpu"],
            host_memory_gib=facts["hostMemoryGiB"],
            allowed_device_counts=tuple(allowed) if allowed else None,
            logical_core_configs=tuple(facts.get("logicalCoreConfigs") or ()),
        ).with_lnc(None)
        catalog[name] = instance
        for alias in facts.get("aliases") or ():
            catalog[alias] = instance._replace(name=alias, alias_of=name)
    return catalog


def primary_instances() -> list[InstanceType]:
    """One entry per hardware (aliases left out), as the render matrix covers them."""
    return [i for i in load_catalog().values() if i.alias_of is None]


def normalise_instance_name(name: str) -> str:
    """inf2-24xlarge, INF2.24XLARGE and inf2_24xlarge all mean inf2.24xlarge (ml-inf2-xlarge: ml.inf2.xlarge)."""
    name = name.strip().lower().replace("_", "-")
    if "." in name:
        return name
    parts = name.split("-")
    if len(parts) == 3 and parts[0] == "ml":
        return ".".join(parts)
    if len(parts) == 2:
        return ".".join(parts)
    return name


def resolve_instance(name: str) -> InstanceType:
    catalog = load_catalog()
    wanted = normalise_instance_name(name)
    if wanted in catalog:
        return catalog[wanted]
    import difflib  # only an unknown name pays for it

    choices = difflib.get_close_matches(wanted, list(catalog), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(choices)}?" if choices else ""
    raise UsageError(f"unknown instance type {name!r}.{hint} Known Neuron instance types: {', '.join(catalog)}")
