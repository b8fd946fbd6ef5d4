"""neuron-pod-usage-exporter: on each scrape, asks the kubelet's PodResources API which containers hold
which Neuron devices and cores, and answers with info metrics that join with neuron-monitor's series on
(instance_id, neuroncore) and (instance_id, neuron_device_index). Runs beside neuron-monitor, one per
Neuron node, with the kubelet's pod-resources socket mounted read-only."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from .allocations import NEURON_DEVICE, NEURONCORE, Allocations, Holder, allocations

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
# The kubelet's own client accepts answers up to 16 MiB (k8s.io/kubelet pkg/apis/podresources, client.go).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# IMDSv2: a session token first, then the instance id (EC2 User Guide, "Use the Instance Metadata Service").
DEFAULT_IMDS = "http://169.254.169.254"
IMDS_TOKEN_TTL_S = 60


class ExporterError(Exception):
    """What the exporter tells its user before it exits: one line, no traceback."""


def instance_id_from_imds(endpoint: str, timeout_s: float) -> str:
    token_request = urllib.request.Request(
        f"{endpoint}/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": str(IMDS_TOKEN_TTL_S)},
    )
    try:
        with urllib.request.urlopen(token_request, timeout=timeout_s) as answer:
            token = answer.read().decode()
        id_request = urllib.request.Request(
            f"{endpoint}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
        )
        with urllib.request.urlopen(id_request, timeout=timeout_s) as answer:
            instance_id: str = answer.read().decode().strip()
    except (urllib.error.URLError, OSError) as error:
        raise ExporterError(
            f"cannot read the instance id from the instance metadata service at {endpoint} ({error}); "
            "pass --instance-id, or allow the pod to reach IMDS (hop limit 2)"
        ) from error
    if not instance_id.startswith("i-"):
        raise ExporterError(f"the instance metadata service at {endpoint} answered {instance_id!r}, not an instance id")
    return instance_id


class PodResourcesClient:
    """The two PodResources v1 calls the exporter makes, over the kubelet's unix socket."""

    def __init__(self, socket_path: str, timeout_s: float) -> None:
        import grpc

        from .podresources.v1 import api_pb2_grpc

        self._channel = grpc.insecure_channel(
            f"unix://{socket_path}", options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        )
        self._stub = api_pb2_grpc.PodResourcesListerStub(self._channel)  # type: ignore[no-untyped-call]
        self._timeout_s = timeout_s

    def read(self, given_cores_per_device: int | None) -> Allocations:
        from .podresources.v1 import api_pb2

        allocatable = self._stub.GetAllocatableResources(api_pb2.AllocatableResourcesRequest(), timeout=self._timeout_s)
        listed = self._stub.List(api_pb2.ListPodResourcesRequest(), timeout=self._timeout_s)
        containers = [
            (Holder(pod.namespace, pod.name, container.name), container.devices)
            for pod in listed.pod_resources
            for container in pod.containers
        ]
        return allocations(containers, allocatable.devices, given_cores_per_device)

    def close(self) -> None:
        self._channel.close()


class UsageCollector:
    """A prometheus_client collector: one PodResources read per scrape, so a scrape sees the allocations
    of that moment. A failed read answers `neuron_pod_resources_up 0` and no allocation series (old
    ones would name pods that may be gone)."""

    def __init__(self, client: PodResourcesClient, instance_id: str, given_cores_per_device: int | None) -> None:
        from prometheus_client import CollectorRegistry, Counter

        self._client = client
        self._instance_id = instance_id
        self._given_cores_per_device = given_cores_per_device
        self._lock = threading.Lock()
        # Counted on its own registry and reported through collect(): the counter keeps its totals
        # across scrapes, which a metric family built afresh each scrape would not.
        self._errors_registry = CollectorRegistry()
        self._errors = Counter(
            "neuron_pod_resources_errors",
            "Failed reads of the kubelet's PodResources API, by gRPC status.",
            ["instance_id", "code"],
            registry=self._errors_registry,
        )

    def collect(self) -> Iterator[Any]:
        import grpc
        from prometheus_client.core import GaugeMetricFamily

        with self._lock:  # two scrapes at once would read twice for nothing
            try:
                found: Allocations | None = self._client.read(self._given_cores_per_device)
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                self._errors.labels(self._instance_id, code.name.lower() if code else "unknown").inc()
                found = None
        instance = self._instance_id
        up = GaugeMetricFamily(
            "neuron_pod_resources_up", "1 when this scrape read the kubelet's PodResources API.", labels=["instance_id"]
        )
        up.add_metric([instance], 1 if found is not None else 0)
        yield up
        yield from self._errors_registry.collect()
        if found is None:
            return
        yield from _allocation_families(instance, found)


def _allocation_families(instance: str, found: Allocations) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    holder_labels = ["namespace", "pod", "container"]
    cores = GaugeMetricFamily(
        "neuron_pod_neuroncore_info",
        "1 for each NeuronCore a container holds; joins neuron-monitor's series on instance_id and neuroncore.",
        labels=["instance_id", "neuroncore", "neuron_device_index", *holder_labels, "resource"],
    )
    for held in found.cores:
        device = "" if held.device is None else str(held.device)
        cores.add_metric([instance, str(held.core), device, *_holder(held.holder), held.resource], 1)
    devices = GaugeMetricFamily(
        "neuron_pod_device_info",
        "1 for each whole Neuron device (aws.amazon.com/neuron) a container holds.",
        labels=["instance_id", "neuron_device_index", *holder_labels],
    )
    for held_device in found.devices:
        devices.add_metric([instance, str(held_device.device), *_holder(held_device.holder)], 1)
    unresolved_info = GaugeMetricFamily(
        "neuron_pod_unresolved_device_info",
        "1 for each allocated device ID the exporter could not map to a core, with the reason.",
        labels=["instance_id", "resource", "device_id", *holder_labels, "reason"],
    )
    for item in found.unresolved:
        unresolved_info.add_metric([instance, item.resource, item.device_id, *_holder(item.holder), item.reason], 1)
    unresolved = GaugeMetricFamily(
        "neuron_pod_unresolved_devices",
        "Allocated device IDs the exporter could not map to a core, by resource.",
        labels=["instance_id", "resource"],
    )
    for resource in (NEURON_DEVICE, NEURONCORE):
        unresolved.add_metric([instance, resource], sum(1 for u in found.unresolved if u.resource == resource))
    allocatable = GaugeMetricFamily(
        "neuron_pod_allocatable",
        "Device IDs the device plugin advertises to the kubelet, by resource.",
        labels=["instance_id", "resource"],
    )
    allocatable.add_metric([instance, NEURON_DEVICE], found.allocatable_devices)
    allocatable.add_metric([instance, NEURONCORE], found.allocatable_cores)
    yield from (cores, devices, unresolved_info, unresolved, allocatable)


def _holder(holder: Holder) -> list[str]:
    return [holder.namespace, holder.pod, holder.container]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, got {text!r}")
    return value


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="neuron-pod-usage-exporter", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--socket", default=DEFAULT_SOCKET, help=f"the kubelet's pod-resources socket ({DEFAULT_SOCKET})"
    )
    parser.add_argument("--listen-address", default="0.0.0.0", help="address of the metrics endpoint (0.0.0.0)")
    parser.add_argument("--port", type=_positive, default=8001, help="port of the metrics endpoint (8001)")
    parser.add_argument(
        "--instance-id", help="the node's EC2 instance id (default: from the instance metadata service)"
    )
    parser.add_argument("--imds-endpoint", default=DEFAULT_IMDS, help=f"instance metadata service ({DEFAULT_IMDS})")
    parser.add_argument(
        "--cores-per-device",
        type=_positive,
        help="NeuronCores per device where the node does not advertise both Neuron resources",
    )
    parser.add_argument("--timeout", type=_seconds, default=5.0, help="seconds per PodResources call (5)")
    return parser.parse_args(argv)


def run(arguments: argparse.Namespace, stop: threading.Event) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    instance_id = arguments.instance_id or instance_id_from_imds(arguments.imds_endpoint, arguments.timeout)
    client = PodResourcesClient(arguments.socket, arguments.timeout)
    registry = CollectorRegistry()
    registry.register(UsageCollector(client, instance_id, arguments.cores_per_device))  # type: ignore[arg-type]
    try:
        server, thread = start_http_server(arguments.port, arguments.listen_address, registry)
    except OSError as error:
        raise ExporterError(f"cannot listen on {arguments.listen_address}:{arguments.port}: {error}") from error
    print(
        f"neuron-pod-usage-exporter: {instance_id}, kubelet socket {arguments.socket}, "
        f"metrics on {arguments.listen_address}:{arguments.port}",
        flush=True,
    )
    stop.wait()
    server.shutdown()
    thread.join()
    client.close()


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        run(arguments, stop)
    except ExporterError as error:
        print(f"neuron-pod-usage-exporter: error: {error}", file=sys.stderr)
        sys.exit(1)
