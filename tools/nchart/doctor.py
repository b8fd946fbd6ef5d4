"""`nchart doctor`: what keeps Neuron pods from running on a live cluster, one finding per problem, each
with its severity and the command that fixes it. It reads; it changes nothing, except the stale usage
maps `--fix` clears (on nodes where no live pod holds Neuron resources, after confirmation).

The checks: Neuron nodes (by their instance-type label) without a Ready device-plugin pod, or whose
allocatable Neuron resources differ from the catalog; my-scheduler's Lease missing or not renewed; the
extender's Service without ready endpoints; NEURON_DEV_USAGE_MAP / NEURON_CORE_USAGE_MAP node
annotations marking more in use than the live pods on the node hold; Pending pods asking for Neuron
resources, with the reason; ReplicaSets refused by a quota; serving namespaces without what the
serving chart's pods need.

The usage maps are read as the extender is reported to write them (aws-neuron-sdk#1300 and public
troubleshooting notes): one comma-separated `true`/`false` per device or core of the node.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from .catalog import DEFAULT_LNC, InstanceType, load_catalog

NEURON = "aws.amazon.com/neuron"
NEURONCORE = "aws.amazon.com/neuroncore"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
LNC_LABEL = "eks-neuron.io/logical-neuroncore-config"
DEVICE_MANAGER_LABEL = "eks-neuron.io/device-manager"
USAGE_MAPS = ("NEURON_DEV_USAGE_MAP", "NEURON_CORE_USAGE_MAP")
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
DEFAULT_LEASE_DURATION_S = 15.0
Json = dict[str, Any]


class DoctorExit(enum.IntEnum):
    CLEAN = 0
    WARNINGS = 1
    ERRORS = 3


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclasses.dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str
    object: str
    message: str
    fix: str

    def as_json(self) -> Json:
        return {**dataclasses.asdict(self), "severity": self.severity.value}


def exit_code(findings: Iterable[Finding]) -> DoctorExit:
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return DoctorExit.ERRORS
    return DoctorExit.WARNINGS if severities else DoctorExit.CLEAN


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

    @classmethod
    def read(cls, api_client: Any) -> ClusterState:
        from kubernetes import client

        core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
        discovery, coordination = client.DiscoveryV1Api(api_client), client.CoordinationV1Api(api_client)

        def items(list_call: Any, **selectors: str) -> list[Json]:
            # The API's JSON as is: the client's models refuse valid objects (an EndpointSlice of a
            # Service with no pods has `endpoints: null`, which its model declares required).
            response = list_call(_preload_content=False, **selectors)
            return list(json.loads(response.data).get("items") or [])

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
        )


# --- small readers --------------------------------------------------------------------------------


def _meta(obj: Json) -> Json:
    return dict(obj.get("metadata") or {})


def _name(obj: Json) -> str:
    return str(_meta(obj).get("name", ""))


def _namespace(obj: Json) -> str:
    return str(_meta(obj).get("namespace", ""))


def _labels(obj: Json) -> dict[str, str]:
    return dict(_meta(obj).get("labels") or {})


def _ref(kind: str, obj: Json) -> str:
    return f"{kind}/{_namespace(obj)}/{_name(obj)}" if _namespace(obj) else f"{kind}/{_name(obj)}"


def _quantity(value: Any) -> int:
    text = str(value or "0")
    return int(float(text[:-1]) / 1000) if text.endswith("m") else int(float(text))


def _pod_spec(obj: Json) -> Json:
    spec = dict(obj.get("spec") or {})
    return dict((spec.get("template") or {}).get("spec") or spec)


def neuron_requests(pod_spec: Json) -> tuple[int, int]:
    """(devices, cores) the pod's containers ask for (limits, as the device plugin counts them)."""
    devices = cores = 0
    for container in pod_spec.get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        devices += _quantity(limits.get(NEURON))
        cores += _quantity(limits.get(NEURONCORE))
    return devices, cores


def _ready(pod: Json) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _live(pod: Json) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and not _meta(pod).get(
        "deletionTimestamp"
    )


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    text = str(value).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text)


def _tolerates(tolerations: list[Json], taint: Json) -> bool:
    for toleration in tolerations:
        key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            continue
        if not key and operator == "Exists":
            return True
        if key == taint.get("key") and (operator == "Exists" or toleration.get("value") == taint.get("value")):
            return True
    return False


# --- the checks -----------------------------------------------------------------------------------


@dataclasses.dataclass
class NeuronNode:
    node: Json
    instance: InstanceType

    @property
    def name(self) -> str:
        return _name(self.node)

    @property
    def allocatable(self) -> tuple[int, int]:
        allocatable = (self.node.get("status") or {}).get("allocatable") or {}
        return _quantity(allocatable.get(NEURON)), _quantity(allocatable.get(NEURONCORE))

    @property
    def uses_dra(self) -> bool:
        return _labels(self.node).get(DEVICE_MANAGER_LABEL) == "dra"


def neuron_nodes(state: ClusterState) -> list[NeuronNode]:
    catalog = load_catalog()
    found = []
    for node in state.nodes:
        labels = _labels(node)
        instance = catalog.get(labels.get(INSTANCE_TYPE_LABEL, ""))
        if instance is None:
            continue
        lnc: Any = labels.get(LNC_LABEL)
        if instance.logical_core_configs:
            instance = instance.with_lnc(int(lnc) if lnc and str(lnc).isdigit() else DEFAULT_LNC)
        found.append(NeuronNode(node, instance))
    return found


def check_device_plugins(state: ClusterState, nodes: list[NeuronNode]) -> list[Finding]:
    findings = []
    plugins = [d for d in state.daemonsets if _labels(d).get("app.kubernetes.io/name") == "neuron-device-plugin"]
    plugin_pods = [p for p in state.pods if _labels(p).get("app.kubernetes.io/name") == "neuron-device-plugin"]
    for node in nodes:
        if node.uses_dra:
            continue
        on_node = [p for p in plugin_pods if (p.get("spec") or {}).get("nodeName") == node.name]
        where = f"Node/{node.name}"
        if any(_ready(p) for p in on_node):
            devices, cores = node.allocatable
            if (devices, cores) != (node.instance.chips, node.instance.cores):
                lnc = f" at LNC {node.instance.lnc}" if node.instance.lnc else ""
                findings.append(
                    Finding(
                        Severity.ERROR,
                        "allocatable",
                        where,
                        f"allocatable {NEURON}={devices}, {NEURONCORE}={cores}; the catalog says "
                        f"{node.instance.chips} and {node.instance.cores} for {node.instance.name}{lnc}: the driver "
                        "or the device plugin sees fewer devices (or the node's LNC differs)",
                        f"kubectl -n {_namespace(on_node[0])} logs {_name(on_node[0])}; "
                        f"and on the node: neuron-ls (label it {LNC_LABEL}=<1|2> if it runs at another LNC)",
                    )
                )
            continue
        if not plugins:
            fix = (
                "helm upgrade eks-neuron oci://ghcr.io/eks-neuron/charts/eks-neuron -n kube-system --reuse-values "
                "--set neuron-device-plugin.enabled=true"
            )
            message = "no neuron-device-plugin DaemonSet in the cluster: the node's Neuron devices are not advertised"
        elif on_node:
            pod = on_node[0]
            fix = (
                f"kubectl -n {_namespace(pod)} logs {_name(pod)}; kubectl -n {_namespace(pod)} delete pod {_name(pod)}"
            )
            message = (
                f"the device plugin pod {_name(pod)} on this node is not Ready: its Neuron devices are not advertised"
            )
        else:
            plugin = plugins[0]
            fix = (
                f"kubectl -n {_namespace(plugin)} get daemonset {_name(plugin)} -o yaml: its node affinity must list "
                f"{node.instance.name} (global.neuron.instanceTypes) and it must tolerate the node's taints"
            )
            message = f"no device plugin pod on this {node.instance.name} node: its Neuron devices are not advertised"
        findings.append(Finding(Severity.ERROR, "device-plugin", where, message, fix))
    return findings


@dataclasses.dataclass
class MyScheduler:
    deployment: Json
    scheduler_names: list[str]
    lease_namespace: str
    lease_name: str
    lease_duration_s: float
    extender_urls: list[str]


def my_schedulers(state: ClusterState) -> list[MyScheduler]:
    """my-scheduler Deployments and what their KubeSchedulerConfiguration says."""
    found = []
    configmaps = {(_namespace(c), _name(c)): c for c in state.configmaps}
    for deployment in state.deployments:
        if _labels(deployment).get("app.kubernetes.io/name") != "my-scheduler":
            continue
        namespace = _namespace(deployment)
        config: Json = {}
        for volume in _pod_spec(deployment).get("volumes") or []:
            configmap = configmaps.get((namespace, (volume.get("configMap") or {}).get("name", "")))
            for text in ((configmap or {}).get("data") or {}).values():
                loaded = yaml.safe_load(text)
                if isinstance(loaded, dict) and loaded.get("kind") == "KubeSchedulerConfiguration":
                    config = loaded
        election = config.get("leaderElection") or {}
        duration = str(election.get("leaseDuration") or f"{DEFAULT_LEASE_DURATION_S}s")
        found.append(
            MyScheduler(
                deployment,
                [p.get("schedulerName", "") for p in config.get("profiles") or []],
                election.get("resourceNamespace") or namespace,
                election.get("resourceName") or _name(deployment),
                _seconds(duration),
                [e.get("urlPrefix", "") for e in config.get("extenders") or []],
            )
        )
    return found


def _seconds(duration: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"([\d.]+)(ms|s|m|h)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total or DEFAULT_LEASE_DURATION_S


def check_schedulers(state: ClusterState, schedulers: list[MyScheduler], now: dt.datetime) -> list[Finding]:
    findings = []
    leases = {(_namespace(lease), _name(lease)): lease for lease in state.leases}
    for scheduler in schedulers:
        namespace, deployment = _namespace(scheduler.deployment), _name(scheduler.deployment)
        restart = f"kubectl -n {namespace} rollout restart deployment/{deployment}"
        where = f"Lease/{scheduler.lease_namespace}/{scheduler.lease_name}"
        lease = leases.get((scheduler.lease_namespace, scheduler.lease_name))
        spec = (lease or {}).get("spec") or {}
        renewed = _parse_time(spec.get("renewTime"))
        if lease is None or not spec.get("holderIdentity"):
            findings.append(
                Finding(
                    Severity.ERROR,
                    "scheduler-lease",
                    where,
                    f"no replica of {deployment} holds its Lease: pods with schedulerName "
                    f"{', '.join(scheduler.scheduler_names) or 'my-scheduler'} are not scheduled",
                    f"kubectl -n {namespace} logs deployment/{deployment}; {restart}",
                )
            )
        elif renewed is None or (now - renewed).total_seconds() > scheduler.lease_duration_s:
            age = "never" if renewed is None else f"{(now - renewed).total_seconds():.0f}s ago"
            findings.append(
                Finding(
                    Severity.ERROR,
                    "scheduler-lease",
                    where,
                    f"held by {spec['holderIdentity']} but last renewed {age} (leaseDuration "
                    f"{scheduler.lease_duration_s:g}s): its leader is gone or stuck",
                    restart,
                )
            )
        for url in scheduler.extender_urls:
            findings.extend(_check_extender(state, url))
    return findings


def _check_extender(state: ClusterState, url: str) -> list[Finding]:
    match = re.match(r"^https?://([^.:/]+)\.([^.:/]+)(?:\.svc[^:/]*)?(?::\d+)?", url)
    if not match:
        return []
    service, namespace = match[1], match[2]
    where = f"Service/{namespace}/{service}"
    extenders = [
        d
        for d in state.deployments
        if _namespace(d) == namespace and _labels(d).get("app.kubernetes.io/name") == "neuron-scheduler"
    ]
    restart = (
        f"kubectl -n {namespace} rollout restart deployment/{_name(extenders[0])}"
        if extenders
        else f"kubectl -n {namespace} get pods -l app.kubernetes.io/name=neuron-scheduler"
    )
    if not any(_namespace(s) == namespace and _name(s) == service for s in state.services):
        return [
            Finding(
                Severity.ERROR,
                "extender",
                where,
                f"my-scheduler calls the extender at {url}, but there is no such Service",
                "set my-scheduler.extender.serviceName to the extender's Service (nchart render checks this)",
            )
        ]
    ready = 0
    for slice_ in state.endpoint_slices:
        if _namespace(slice_) != namespace or _labels(slice_).get("kubernetes.io/service-name") != service:
            continue
        ready += sum(1 for e in slice_.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))
    if ready:
        return []
    return [
        Finding(
            Severity.ERROR,
            "extender",
            where,
            "the extender's Service has no ready endpoints: my-scheduler fails every Neuron pod it places",
            restart,
        )
    ]


def _in_use(value: str) -> int | None:
    entries = [e.strip().lower() for e in value.split(",") if e.strip()]
    if not entries or any(e not in ("true", "false") for e in entries):
        return None
    return entries.count("true")


def check_usage_maps(state: ClusterState, nodes: list[NeuronNode]) -> list[Finding]:
    findings = []
    for node in nodes:
        annotations = _meta(node.node).get("annotations") or {}
        maps = {key: annotations[key] for key in USAGE_MAPS if key in annotations}
        if not maps:
            continue
        live = [
            p
            for p in state.pods
            if (p.get("spec") or {}).get("nodeName") == node.name and _live(p) and any(neuron_requests(p["spec"]))
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
                holders = ", ".join(f"{_namespace(p)}/{_name(p)}" for p in live) or "none"
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


def _fits(node: NeuronNode, devices: int, cores: int) -> bool:
    have_devices, have_cores = node.allocatable
    return devices <= have_devices and cores <= have_cores


def check_pending_pods(state: ClusterState, nodes: list[NeuronNode], schedulers: list[MyScheduler]) -> list[Finding]:
    findings = []
    running_schedulers = {"default-scheduler"} | {n for s in schedulers for n in s.scheduler_names}
    extender_installed = bool(schedulers)
    for pod in state.pods:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if status.get("phase") != "Pending" or spec.get("nodeName") or not _live(pod):
            continue
        devices, cores = neuron_requests(spec)
        if not devices and not cores:
            continue
        where, namespace, name = _ref("Pod", pod), _namespace(pod), _name(pod)
        scheduler = spec.get("schedulerName") or "default-scheduler"
        selector = spec.get("nodeSelector") or {}
        candidates = [n for n in nodes if all(_labels(n.node).get(k) == v for k, v in selector.items())]
        tolerations = spec.get("tolerations") or []
        tolerated = [
            n
            for n in candidates
            if all(
                _tolerates(tolerations, t)
                for t in (n.node.get("spec") or {}).get("taints") or []
                if t.get("effect") in ("NoSchedule", "NoExecute")
            )
        ]
        describe = f"kubectl -n {namespace} describe pod {name}"
        if scheduler not in running_schedulers:
            reason = f"schedulerName {scheduler}: no scheduler in the cluster has that name"
            fix = f"set schedulerName to {', '.join(sorted(running_schedulers - {'default-scheduler'})) or 'default-scheduler'}"
        elif extender_installed and scheduler == "default-scheduler" and devices + cores > 1:
            names = sorted(running_schedulers - {"default-scheduler"})
            reason = "more than one Neuron device or core on the default scheduler, which does not keep them connected"
            fix = f"set schedulerName: {names[0]}"
        elif not candidates:
            reason = (
                f"no Neuron node matches its nodeSelector {selector}" if selector else "no Neuron nodes in the cluster"
            )
            fix = "add Neuron nodes (a Karpenter NodePool or node group for the instance type), or fix the nodeSelector"
        elif not tolerated:
            taints = sorted(
                {
                    f"{t.get('key')}:{t.get('effect')}"
                    for n in candidates
                    for t in (n.node.get("spec") or {}).get("taints") or []
                }
            )
            reason = f"no Neuron node's taints are tolerated (the nodes carry {', '.join(taints)})"
            fix = "add a toleration, e.g. {key: aws.amazon.com/neuron, operator: Exists, effect: NoSchedule}"
        elif not any(_fits(n, devices, cores) for n in tolerated):
            biggest = max(tolerated, key=lambda n: n.allocatable[1])
            reason = (
                f"asks for {devices} devices and {cores} cores; the largest matching node "
                f"({biggest.instance.name}) has {biggest.allocatable[0]} and {biggest.allocatable[1]}"
            )
            fix = "ask for fewer, or add a bigger Neuron instance type"
        else:
            condition: Json = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
            message = condition.get("message") or "not scheduled yet"
            findings.append(Finding(Severity.WARNING, "pending-pod", where, f"Pending: {message}", describe))
            continue
        findings.append(Finding(Severity.ERROR, "pending-pod", where, f"Pending: {reason}", f"{fix}; {describe}"))
    return findings


def check_quota_refusals(state: ClusterState) -> list[Finding]:
    findings = []
    for replicaset in state.replicasets:
        devices, cores = neuron_requests(_pod_spec(replicaset))
        if not devices and not cores:
            continue
        for condition in (replicaset.get("status") or {}).get("conditions") or []:
            message = str(condition.get("message") or "")
            if condition.get("type") == "ReplicaFailure" and "exceeded quota" in message:
                namespace = _namespace(replicaset)
                findings.append(
                    Finding(
                        Severity.ERROR,
                        "quota",
                        _ref("ReplicaSet", replicaset),
                        f"its pods are refused by a ResourceQuota: {message}",
                        f"kubectl -n {namespace} describe resourcequota (raise the Neuron limits there)",
                    )
                )
    return findings


def check_serving_namespaces(state: ClusterState) -> list[Finding]:
    findings = []
    namespaces = {_name(n): n for n in state.namespaces}
    accounts = {(_namespace(a), _name(a)): a for a in state.service_accounts}
    for deployment in state.deployments:
        if _labels(deployment).get("app.kubernetes.io/name") != "sd21-serving":
            continue
        namespace, spec = _namespace(deployment), _pod_spec(deployment)
        where = _ref("Deployment", deployment)
        account_name = spec.get("serviceAccountName") or "default"
        account = accounts.get((namespace, account_name))
        if account is None:
            findings.append(
                Finding(
                    Severity.ERROR,
                    "serving-namespace",
                    where,
                    f"its ServiceAccount {namespace}/{account_name} does not exist: no pod can be created",
                    f"kubectl -n {namespace} create serviceaccount {account_name} (or set "
                    "sd21-serving.serviceAccount.create=true)",
                )
            )
        elif ROLE_ARN_ANNOTATION not in ((account.get("metadata") or {}).get("annotations") or {}):
            findings.append(
                Finding(
                    Severity.WARNING,
                    "serving-namespace",
                    where,
                    f"its ServiceAccount {namespace}/{account_name} has no {ROLE_ARN_ANNOTATION}: the model "
                    "fetch from S3 has no IAM role (unless the node's role may read the bucket)",
                    f"kubectl -n {namespace} annotate serviceaccount {account_name} {ROLE_ARN_ANNOTATION}=<role ARN> "
                    "(sd21-serving.serviceAccount.iamRoleArn; nchart tf apply writes it)",
                )
            )
        level = _labels(namespaces.get(namespace, {})).get("pod-security.kubernetes.io/enforce", "privileged")
        uses_host_path = any("hostPath" in v for v in spec.get("volumes") or [])
        if uses_host_path and level in ("baseline", "restricted"):
            findings.append(
                Finding(
                    Severity.ERROR,
                    "serving-namespace",
                    where,
                    f"it mounts a hostPath model cache, which namespace {namespace} (Pod Security {level}) refuses",
                    f"kubectl label namespace {namespace} pod-security.kubernetes.io/enforce=privileged --overwrite "
                    "(or sd21-serving.model.volume=emptyDir)",
                )
            )
    return findings


def diagnose(state: ClusterState, now: dt.datetime) -> list[Finding]:
    nodes = neuron_nodes(state)
    schedulers = my_schedulers(state)
    return [
        *check_device_plugins(state, nodes),
        *check_schedulers(state, schedulers, now),
        *check_usage_maps(state, nodes),
        *check_pending_pods(state, nodes, schedulers),
        *check_quota_refusals(state),
        *check_serving_namespaces(state),
    ]


def clearable_usage_maps(state: ClusterState, findings: list[Finding]) -> list[str]:
    """Nodes whose stale usage maps `--fix` may clear: no live pod there holds Neuron resources."""
    stale = {f.object.removeprefix("Node/") for f in findings if f.check == "usage-map"}
    busy = {
        (p.get("spec") or {}).get("nodeName")
        for p in state.pods
        if _live(p) and any(neuron_requests(p.get("spec") or {}))
    }
    return sorted(stale - busy)


def clear_usage_maps(api_client: Any, nodes: list[str]) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    for node in nodes:
        core.patch_node(node, {"metadata": {"annotations": dict.fromkeys(USAGE_MAPS)}})


def table(findings: list[Finding]) -> list[str]:
    if not findings:
        return ["no problems found"]
    widths = [max(len(getattr(f, field) if field != "severity" else f.severity.value) for f in findings) for field in
              ("severity", "check", "object")]  # fmt: skip
    lines = []
    for finding in findings:
        cells = (finding.severity.value, finding.check, finding.object)
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + finding.message)
        lines.append(" " * (sum(widths) + 6) + "fix: " + finding.fix)
    return lines


Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
