"""The cluster as the checks read it (ClusterState, listed once through the API), and the small readers
and names the checks share."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any

from ..core.addons import Addon
from ..core.catalog import DEFAULT_LNC, InstanceType, load_catalog
from ..core.names import DEVICE_MANAGER_LABEL, INSTANCE_TYPE_LABEL, LNC_LABEL, NEURON, NEURONCORE

DEFAULT_LEASE_DURATION_S = 15.0
Json = dict[str, Any]
# The add-ons' kinds doctor reads: kind -> (group, version, plural).
CUSTOM_KINDS = {
    "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
    "PrometheusRule": ("monitoring.coreos.com", "v1", "prometheusrules"),
    "Prometheus": ("monitoring.coreos.com", "v1", "prometheuses"),
    "ScaledObject": ("keda.sh", "v1alpha1", "scaledobjects"),
    "NodePool": ("karpenter.sh", "v1", "nodepools"),
    "EC2NodeClass": ("karpenter.k8s.aws", "v1", "ec2nodeclasses"),
}
PART_OF = "app.kubernetes.io/part-of"
# The API groups of the CRDs our charts ship (in a chart's crds/, which Helm installs once and never
# upgrades): doctor reads these CRDs to compare them with the checkout's.
OWN_CRD_GROUPS = ("neuron.aws.com",)


@dataclasses.dataclass
class ClusterState:
    """What the checks read, as plain JSON objects (the API's field names)."""

    nodes: list[Json]
    pods: list[Json]
    deployments: list[Json]
    daemonsets: list[Json]
    replicasets: list[Json]
    services: list[Json]
    endpoint_slices: list[Json]
    leases: list[Json]
    configmaps: list[Json]
    namespaces: list[Json]
    service_accounts: list[Json]
    # The platform add-ons' objects (empty where the cluster does not serve the kind).
    ingresses: list[Json] = dataclasses.field(default_factory=list)
    api_services: list[Json] = dataclasses.field(default_factory=list)
    custom: dict[str, list[Json]] = dataclasses.field(default_factory=dict)
    # terraform/addons.yaml, for the versions the fixes name.
    addons: dict[str, Addon] = dataclasses.field(default_factory=dict)
    # Every Secret's metadata, without its data (doctor asks the API for PartialObjectMetadata); None
    # where the identity doctor runs as may not list Secrets (the checks that need them then skip).
    secrets: list[Json] | None = dataclasses.field(default_factory=list)
    # The cluster's CRDs of OWN_CRD_GROUPS (None where it may not list CRDs), and the checkout's
    # (charts/*/crds/, by file), to compare.
    crds: list[Json] | None = dataclasses.field(default_factory=list)
    chart_crds: dict[str, Json] = dataclasses.field(default_factory=dict)

    def custom_objects(self, kind: str) -> list[Json]:
        """Objects of one of CUSTOM_KINDS, by kind."""
        return self.custom.get(kind, [])

    @classmethod
    def read(cls, api_client: Any) -> ClusterState:
        from kubernetes import client

        core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
        custom_api = client.CustomObjectsApi(api_client)
        discovery, coordination = client.DiscoveryV1Api(api_client), client.CoordinationV1Api(api_client)

        def items(list_call: Any, **selectors: str) -> list[Json]:
            # The API's JSON as is: the client's models refuse valid objects (an EndpointSlice of a
            # Service with no pods has `endpoints: null`, which its model declares required).
            response = list_call(_preload_content=False, **selectors)
            return list(json.loads(response.data).get("items") or [])

        def custom_items(group: str, version: str, plural: str) -> list[Json]:
            try:
                return items(custom_api.list_cluster_custom_object, group=group, version=version, plural=plural)
            except client.ApiException as error:
                if error.status == 404:  # the add-on (its CRD) is not installed
                    return []
                raise

        def unless_forbidden(read: Any) -> list[Json] | None:
            """None where this identity may not list them (403): the checks that need them skip."""
            try:
                listed: list[Json] = read()
            except client.ApiException as error:
                if error.status == 403:
                    return None
                raise
            return listed

        def secret_names() -> list[Json]:
            # Names only: the API server answers PartialObjectMetadata, so no Secret's data is read.
            accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
            response = api_client.call_api(
                "/api/v1/secrets",
                "GET",
                header_params={"Accept": accept},
                auth_settings=["BearerToken"],
                _preload_content=False,
            )[0]
            return list(json.loads(response.data).get("items") or [])

        def own_crds() -> list[Json]:
            listed = items(client.ApiextensionsV1Api(api_client).list_custom_resource_definition)
            return [crd for crd in listed if (crd.get("spec") or {}).get("group") in OWN_CRD_GROUPS]

        return cls(
            nodes=items(core.list_node),
            pods=items(core.list_pod_for_all_namespaces),
            deployments=items(apps.list_deployment_for_all_namespaces),
            daemonsets=items(apps.list_daemon_set_for_all_namespaces),
            replicasets=items(apps.list_replica_set_for_all_namespaces),
            services=items(core.list_service_for_all_namespaces),
            endpoint_slices=items(discovery.list_endpoint_slice_for_all_namespaces),
            leases=items(coordination.list_lease_for_all_namespaces),
            configmaps=items(core.list_config_map_for_all_namespaces, label_selector="app.kubernetes.io/name"),
            namespaces=items(core.list_namespace),
            service_accounts=items(core.list_service_account_for_all_namespaces),
            ingresses=items(client.NetworkingV1Api(api_client).list_ingress_for_all_namespaces),
            api_services=items(client.ApiregistrationV1Api(api_client).list_api_service),
            custom={kind: custom_items(*where) for kind, where in CUSTOM_KINDS.items()},
            secrets=unless_forbidden(secret_names),
            crds=unless_forbidden(own_crds),
        )


def meta_of(obj: Json) -> Json:
    return dict(obj.get("metadata") or {})


def name_of(obj: Json) -> str:
    return str(meta_of(obj).get("name", ""))


def namespace_of(obj: Json) -> str:
    return str(meta_of(obj).get("namespace", ""))


def labels_of(obj: Json) -> dict[str, str]:
    return dict(meta_of(obj).get("labels") or {})


def ref_of(kind: str, obj: Json) -> str:
    return f"{kind}/{namespace_of(obj)}/{name_of(obj)}" if namespace_of(obj) else f"{kind}/{name_of(obj)}"


def quantity_of(value: Any) -> int:
    text = str(value or "0")
    return int(float(text[:-1]) / 1000) if text.endswith("m") else int(float(text))


def pod_spec_of(obj: Json) -> Json:
    spec = dict(obj.get("spec") or {})
    return dict((spec.get("template") or {}).get("spec") or spec)


def neuron_requests(pod_spec: Json) -> tuple[int, int]:
    """(devices, cores) the pod's containers ask for (limits, as the device plugin counts them)."""
    devices = cores = 0
    for container in pod_spec.get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        devices += quantity_of(limits.get(NEURON))
        cores += quantity_of(limits.get(NEURONCORE))
    return devices, cores


def is_ready(pod: Json) -> bool:
    return (condition_of(pod, "Ready") or {}).get("status") == "True"


def is_live(pod: Json) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and not meta_of(pod).get(
        "deletionTimestamp"
    )


def parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    text = str(value).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text)


def tolerates(tolerations: list[Json], taint: Json) -> bool:
    for toleration in tolerations:
        key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            continue
        if not key and operator == "Exists":
            return True
        if key == taint.get("key") and (operator == "Exists" or toleration.get("value") == taint.get("value")):
            return True
    return False


@dataclasses.dataclass
class NeuronNode:
    node: Json
    instance: InstanceType

    @property
    def name(self) -> str:
        return name_of(self.node)

    @property
    def allocatable(self) -> tuple[int, int]:
        allocatable = (self.node.get("status") or {}).get("allocatable") or {}
        return quantity_of(allocatable.get(NEURON)), quantity_of(allocatable.get(NEURONCORE))

    @property
    def uses_dra(self) -> bool:
        return labels_of(self.node).get(DEVICE_MANAGER_LABEL) == "dra"


def neuron_nodes(state: ClusterState) -> list[NeuronNode]:
    catalog = load_catalog()
    found = []
    for node in state.nodes:
        labels = labels_of(node)
        instance = catalog.get(labels.get(INSTANCE_TYPE_LABEL, ""))
        if instance is None:
            continue
        lnc: Any = labels.get(LNC_LABEL)
        if instance.logical_core_configs:
            instance = instance.with_lnc(int(lnc) if lnc and str(lnc).isdigit() else DEFAULT_LNC)
        found.append(NeuronNode(node, instance))
    return found


def seconds(duration: str) -> float:
    """A Go duration (15s, 1m30s, 500ms) in seconds."""
    total = 0.0
    for amount, unit in re.findall(r"([\d.]+)(ms|s|m|h)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total or DEFAULT_LEASE_DURATION_S


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ours(objects: list[Json]) -> list[Json]:
    """The objects this project's charts made (app.kubernetes.io/part-of: eks-neuron)."""
    return [o for o in objects if labels_of(o).get(PART_OF) == "eks-neuron"]


def condition_of(obj: Json, kind: str) -> Json | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def selects(selector: Json | None, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector matches the labels; a null selector matches nothing, an empty
    one everything (the prometheus-operator's reading of its selectors)."""
    if selector is None:
        return False
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def install_hint(state: ClusterState, addon: str) -> str:
    """How to install an add-on: its version (terraform/addons.yaml) and the terraform switch."""
    known = state.addons.get(addon)
    version = f" {known.version_text}" if known else ""
    return f"install {addon}{version} (terraform/: install_{addon.replace('-', '_')} = true)"


def deployment_ready(deployment: Json) -> bool:
    status = deployment.get("status") or {}
    return int(status.get("readyReplicas") or 0) >= 1 and int(status.get("availableReplicas") or 0) >= 1
