"""Who holds which Neuron device and NeuronCore, from the kubelet's PodResources answers.

The mapping, and where each part of it comes from:
- The kubelet reports, per container, the device IDs the device plugin allocated for each extended
  resource (PodResources v1 `List`), and every device ID the plugin advertised
  (`GetAllocatableResources`). It lists a device once per NUMA node it sits on, so IDs are counted
  once each (kubernetes pkg/kubelet/cm/container_manager.go, containerDevicesFromResourceDeviceInstances).
- The Neuron device plugin advertises `aws.amazon.com/neuroncore` and `aws.amazon.com/neuron` (Neuron
  docs, "Kubernetes environment setup for Neuron"). Its device IDs are not documented. Neuron's own
  numbering is documented: the scheduler extension hands a pod cores by their node-wide index, and the
  runtime takes the same indices in NEURON_RT_VISIBLE_CORES ("Neuron Scheduler Extension Flow
  Diagram", https://awsdocs-neuron.readthedocs-hosted.com/en/latest/containers/tutorials/ks8-neuron-scheduler-flow.html); neuron-monitor labels its series with that core index (`neuroncore`) and the device index
  (`neuron_device_index`). This mapping reads an ID made of decimal digits as that index: a
  neuroncore ID as the core, a neuron ID as the device, whose cores are the device's consecutive block
  (device d holds cores d*k to d*k+k-1, k cores per device, as the Neuron docs number them).
- Cores per device: the node's advertised neuroncore IDs over its neuron IDs, when both are advertised
  and divide evenly, else the value the exporter is given.

Anything else is not guessed: an ID that is not a decimal index, a whole device whose cores cannot be
numbered, and a core that two containers claim are reported as unresolved, with the reason."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Protocol

NEURON_DEVICE = "aws.amazon.com/neuron"
NEURONCORE = "aws.amazon.com/neuroncore"
NEURON_RESOURCES = (NEURON_DEVICE, NEURONCORE)


class _ContainerDevices(Protocol):
    resource_name: str
    device_ids: Iterable[str]


@dataclasses.dataclass(frozen=True, order=True)
class Holder:
    namespace: str
    pod: str
    container: str


@dataclasses.dataclass(frozen=True, order=True)
class HeldCore:
    core: int
    device: int | None
    holder: Holder
    resource: str
    # The ID the kubelet reported: the core's own, or its device's.
    device_id: str


@dataclasses.dataclass(frozen=True, order=True)
class HeldDevice:
    device: int
    holder: Holder


@dataclasses.dataclass(frozen=True, order=True)
class Unresolved:
    resource: str
    device_id: str
    holder: Holder
    reason: str


@dataclasses.dataclass(frozen=True)
class Allocations:
    cores: tuple[HeldCore, ...]
    devices: tuple[HeldDevice, ...]
    unresolved: tuple[Unresolved, ...]
    allocatable_devices: int
    allocatable_cores: int
    cores_per_device: int | None


def advertised_ids(devices: Iterable[_ContainerDevices], resource: str) -> set[str]:
    return {device_id for entry in devices if entry.resource_name == resource for device_id in entry.device_ids}


def cores_per_device(device_ids: set[str], core_ids: set[str], given: int | None) -> int | None:
    """k, the cores of one device: from what the node advertises, else `given`."""
    if device_ids and core_ids and len(core_ids) % len(device_ids) == 0:
        return len(core_ids) // len(device_ids)
    return given


def _index(device_id: str) -> int | None:
    return int(device_id) if device_id.isascii() and device_id.isdigit() else None


def allocations(
    containers: Iterable[tuple[Holder, Iterable[_ContainerDevices]]],
    allocatable: Iterable[_ContainerDevices],
    given_cores_per_device: int | None = None,
) -> Allocations:
    """The Neuron allocations of `containers` (each holder with its ContainerDevices, as List gives
    them), numbered with the node's `allocatable` devices (as GetAllocatableResources gives them)."""
    allocatable = list(allocatable)
    device_ids = advertised_ids(allocatable, NEURON_DEVICE)
    core_ids = advertised_ids(allocatable, NEURONCORE)
    per_device = cores_per_device(device_ids, core_ids, given_cores_per_device)

    claims: dict[int, list[HeldCore]] = {}
    devices: set[HeldDevice] = set()
    unresolved: set[Unresolved] = set()
    for holder, container_devices in containers:
        for resource, device_id in sorted(
            {(entry.resource_name, i) for entry in container_devices for i in entry.device_ids}
        ):
            if resource not in NEURON_RESOURCES:
                continue
            index = _index(device_id)
            if index is None:
                unresolved.add(Unresolved(resource, device_id, holder, "not a decimal index"))
            elif resource == NEURONCORE:
                device = index // per_device if per_device else None
                claims.setdefault(index, []).append(HeldCore(index, device, holder, resource, device_id))
            else:
                devices.add(HeldDevice(index, holder))
                if per_device is None:
                    unresolved.add(Unresolved(resource, device_id, holder, "cores per device unknown"))
                    continue
                for core in range(index * per_device, (index + 1) * per_device):
                    claims.setdefault(core, []).append(HeldCore(core, index, holder, resource, device_id))

    cores = []
    for held in claims.values():
        if len({claim.holder for claim in held}) == 1:
            cores.append(held[0])
            continue
        # Two containers on one core: which one runs there is not known, so neither is named for it.
        for claim in held:
            reason = f"core {claim.core} claimed by more than one container"
            unresolved.add(Unresolved(claim.resource, claim.device_id, claim.holder, reason))
    return Allocations(
        cores=tuple(sorted(cores)),
        devices=tuple(sorted(devices)),
        unresolved=tuple(sorted(unresolved)),
        allocatable_devices=len(device_ids),
        allocatable_cores=len(core_ids),
        cores_per_device=per_device,
    )
