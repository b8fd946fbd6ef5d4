"""A STAND-IN for the kubelet's PodResources API, for tests only.

The real API is served by the kubelet on /var/lib/kubelet/pod-resources/kubelet.sock; no kubelet runs
here. This stand-in serves the same gRPC service, built from the kubelet's own protobuf
(k8s.io/kubelet pkg/apis/podresources/v1/api.proto, vendored with the exporter), on a unix socket,
and keeps the parts of the real server's contract a client can trip over (kubernetes v1.34
pkg/kubelet/apis/podresources/server_v1.go, pkg/kubelet/cm/container_manager.go,
pkg/kubelet/apis/grpc/ratelimit.go):
- List names every container of every pod, devices or not; a device is listed once per NUMA node
  of its topology, so a device on two nodes appears twice;
- GetAllocatableResources lists every advertised device the same way;
- Get answers one pod, and an error for a pod it does not know;
- more than 100 calls a second (bursts of 10) are refused with RESOURCE_EXHAUSTED, "rejected by
  rate limit", on a clock the test can move.
Allocations are shaped as a device plugin would hand them out, and the test can change them between
calls. It does not model the kubelet's pods lifecycle or CPU and memory managers (it answers no CPU
IDs or memory).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from neuron_pod_usage.podresources.v1 import api_pb2, api_pb2_grpc

# pkg/kubelet/apis/podresources/constants.go
RATE_LIMIT_QPS = 100
RATE_LIMIT_BURST = 10


@dataclasses.dataclass(frozen=True)
class Device:
    resource: str
    device_id: str
    numa_nodes: tuple[int, ...] = (0,)


@dataclasses.dataclass(frozen=True)
class Container:
    name: str
    # resource -> device IDs the device plugin allocated
    devices: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    containers: tuple[Container, ...]


def neuron_node_devices(devices: int, cores_per_device: int, numa_nodes: int = 1) -> list[Device]:
    """What the Neuron device plugin advertises on a node: each device, and each of its cores, by
    index (devices spread evenly over the NUMA nodes)."""
    advertised = []
    for device in range(devices):
        node = (device * numa_nodes // devices,)
        advertised.append(Device("aws.amazon.com/neuron", str(device), node))
        for core in range(device * cores_per_device, (device + 1) * cores_per_device):
            advertised.append(Device("aws.amazon.com/neuroncore", str(core), node))
    return advertised


class _TokenBucket:
    """The kubelet's limiter (golang.org/x/time/rate, as ratelimit.go builds it), on a given clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tokens = float(RATE_LIMIT_BURST)
        self._last = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(RATE_LIMIT_BURST, self._tokens + (now - self._last) * RATE_LIMIT_QPS)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class KubeletPodResources(api_pb2_grpc.PodResourcesListerServicer):
    """The servicer; `pods` and `allocatable` may be replaced while it serves."""

    def __init__(self, allocatable: Iterable[Device], pods: Iterable[Pod], clock: Callable[[], float]) -> None:
        self.allocatable = list(allocatable)
        self.pods = list(pods)
        self.calls = 0
        self._numa = {(d.resource, d.device_id): d.numa_nodes for d in self.allocatable}
        self._limiter = _TokenBucket(clock)

    def _admit(self, context: grpc.ServicerContext) -> None:
        self.calls += 1
        if not self._limiter.allow():
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "rejected by rate limit")

    def _container_devices(self, resource: str, device_ids: Iterable[str]) -> list[Any]:
        return [
            api_pb2.ContainerDevices(
                resource_name=resource,
                device_ids=[device_id],
                topology=api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=node)]),
            )
            for device_id in device_ids
            for node in self._numa.get((resource, device_id), (0,))
        ]

    def _pod(self, pod: Pod) -> Any:
        return api_pb2.PodResources(
            name=pod.name,
            namespace=pod.namespace,
            containers=[
                api_pb2.ContainerResources(
                    name=container.name,
                    devices=[
                        entry
                        for resource, device_ids in sorted(container.devices.items())
                        for entry in self._container_devices(resource, device_ids)
                    ],
                )
                for container in pod.containers
            ],
        )

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._admit(context)
        return api_pb2.ListPodResourcesResponse(pod_resources=[self._pod(pod) for pod in self.pods])

    def GetAllocatableResources(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._admit(context)
        devices = [
            entry
            for device in self.allocatable
            for entry in self._container_devices(device.resource, [device.device_id])
        ]
        return api_pb2.AllocatableResourcesResponse(devices=devices)

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._admit(context)
        for pod in self.pods:
            if (pod.namespace, pod.name) == (request.pod_namespace, request.pod_name):
                return api_pb2.GetPodResourcesResponse(pod_resources=self._pod(pod))
        # The kubelet returns a plain error here, which gRPC sends as UNKNOWN.
        context.abort(grpc.StatusCode.UNKNOWN, f"pod {request.pod_name} in namespace {request.pod_namespace} not found")


class StandInKubelet:
    """The stand-in serving on `socket_path` until stop()."""

    def __init__(
        self,
        socket_path: Path,
        allocatable: Iterable[Device],
        pods: Iterable[Pod] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket_path = socket_path
        self.servicer = KubeletPodResources(allocatable, pods, clock)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(self.servicer, self._server)
        if not self._server.add_insecure_port(f"unix:{socket_path}"):
            raise RuntimeError(f"cannot serve on {socket_path}")

    def __enter__(self) -> StandInKubelet:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.stop(grace=None).wait()

    def set_pods(self, pods: Iterable[Pod]) -> None:
        self.servicer.pods = list(pods)
