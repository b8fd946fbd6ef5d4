"""What the API server will require of a value, written into the generated schemas, so that a value it
would refuse is refused at render with its key instead of halfway through `helm install`.

Three sources, each the rule's own home rather than a copy of it:
- Kubernetes objects the charts pass through (tolerations, probes, resources...): the definition of
  their type from the Kubernetes OpenAPI, strict (unknown fields refused), as kubernetes-validate ships
  it for the Kubernetes version the charts are linted for; only the types used, bundled per chart.
- Fields of the add-ons' CRDs a value is copied into (a ServiceMonitor's interval, a NodePool's
  expireAfter): that field's schema from ci/crd-schemas.
- Names, labels and annotations: the formats of Kubernetes' apimachinery validation (core/formats.py),
  by the key a value is set under.
Keys are matched by name (and, for generic names, by their parent's): a new key of a known kind gets its
rule without anyone remembering to add it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..core.formats import FORMATS
from ..core.podsecurity import DECLARABLE
from ..core.project import Project
from ..errors import ExitCode, NchartError

KUBERNETES_VERSION = "1.34"  # nchart lint's default --kube-version

# key -> (Kubernetes definition, whether the key holds a list of them)
KUBERNETES_OBJECTS: dict[str, tuple[str, bool]] = {
    "affinity": ("io.k8s.api.core.v1.Affinity", False),
    "tolerations": ("io.k8s.api.core.v1.Toleration", True),
    "topologySpreadConstraints": ("io.k8s.api.core.v1.TopologySpreadConstraint", True),
    "livenessProbe": ("io.k8s.api.core.v1.Probe", False),
    "readinessProbe": ("io.k8s.api.core.v1.Probe", False),
    "startupProbe": ("io.k8s.api.core.v1.Probe", False),
    "resources": ("io.k8s.api.core.v1.ResourceRequirements", False),
    "securityContext": ("io.k8s.api.core.v1.SecurityContext", False),
    "podSecurityContext": ("io.k8s.api.core.v1.PodSecurityContext", False),
    "extraEnv": ("io.k8s.api.core.v1.EnvVar", True),
    "imagePullSecrets": ("io.k8s.api.core.v1.LocalObjectReference", True),
    "updateStrategy": ("io.k8s.api.apps.v1.DaemonSetUpdateStrategy", False),
    "extraIngressFrom": ("io.k8s.api.networking.v1.NetworkPolicyPeer", True),
    "dnsPeer": ("io.k8s.api.networking.v1.NetworkPolicyPeer", False),
    "egress.extraRules": ("io.k8s.api.networking.v1.NetworkPolicyEgressRule", True),
    "namespaceSelector": ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", False),
    "podSelector": ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", False),
}

# key -> (CRD schema file under ci/crd-schemas, the field's path in it; `[]` steps into list items)
CRD_FIELDS: dict[str, tuple[str, str]] = {
    "serviceMonitor.interval": ("monitoring.coreos.com/servicemonitor_v1.json", "spec.endpoints[].interval"),
    "serviceMonitor.scrapeTimeout": ("monitoring.coreos.com/servicemonitor_v1.json", "spec.endpoints[].scrapeTimeout"),
    "serviceMonitor.relabelings": ("monitoring.coreos.com/servicemonitor_v1.json", "spec.endpoints[].relabelings"),
    "serviceMonitor.metricRelabelings": (
        "monitoring.coreos.com/servicemonitor_v1.json",
        "spec.endpoints[].metricRelabelings",
    ),
    "disruption.consolidateAfter": ("karpenter.sh/nodepool_v1.json", "spec.disruption.consolidateAfter"),
    "disruption.budgets": ("karpenter.sh/nodepool_v1.json", "spec.disruption.budgets"),
    "karpenter.expireAfter": ("karpenter.sh/nodepool_v1.json", "spec.template.spec.expireAfter"),
    "nodeClass.volumeSize": ("karpenter.k8s.aws/ec2nodeclass_v1.json", "spec.blockDeviceMappings[].ebs.volumeSize"),
}

# key (or parent.key) -> format
STRING_FORMATS: dict[str, str] = {
    "nameOverride": "dns-label",
    # A Service takes the full name, and a Service name is a DNS-1035 label.
    "fullnameOverride": "dns-1035-label",
    "namespaceOverride": "dns-label",
    "extender.namespace": "dns-label",
    "extender.serviceName": "dns-1035-label",
    "extender.clusterDomain": "dns-subdomain",
    "leaderElection.resourceNamespace": "dns-label",
    "leaderElection.resourceName": "dns-subdomain",
    "serviceAccount.name": "dns-subdomain",
    "priorityClassName": "dns-subdomain",
    "schedulerName": "dns-subdomain",
    "ingress.className": "dns-subdomain",
    "ingress.tlsSecretName": "dns-subdomain",
    "sidecar.label": "qualified-name",
    "sidecar.labelValue": "label-value",
    "sidecar.folderAnnotation": "qualified-name",
    "taint.key": "qualified-name",
    # A Node's taint value is a label value (empty: the chart leaves `value` out).
    "taint.value": "label-value",
    "ingress.host": "ingress-host",
    "emptyDirSizeLimit": "quantity",
    "podDisruptionBudget.minAvailable": "percent",
    "podDisruptionBudget.maxUnavailable": "percent",
    "neuronTaint.key": "qualified-name",
    "deviceManagerLabel": "qualified-name-or-empty",
    # lists of names: each item as the format says, and none empty
    "excludedNamespaces": "dns-label",
    "excludedComputeTypes": "label-value",
    "instanceTypes": "label-value",
    # a Karpenter NodePool's requirement values (instance families, sizes, categories) are label values
    "families": "label-value",
    "sizes": "label-value",
    "categories": "label-value",
    "driverName": "dns-subdomain",
    "auth.existingSecret": "dns-subdomain",
    "auth.metricsTokenKey": "data-key",
    "ingressCIDRs": "ipv4-cidr",
    "httpsCIDRs": "ipv4-cidr",
}

# The CRDs' CEL rules (x-kubernetes-validations) inside a copied field, as JSON Schema: a rule not listed
# here stops the generation, so that a new upstream rule is not silently left to the API server.
CEL_RULES: dict[str, dict[str, Any]] = {
    # NodePool disruption budgets: "'schedule' must be set with 'duration'"
    "self.all(x, has(x.schedule) == has(x.duration))": {
        "items": {"dependencies": {"schedule": ["duration"], "duration": ["schedule"]}}
    },
}

# Maps matched by their own name: label maps (keys qualified names, values label values) and
# annotation maps (keys qualified names).
LABEL_MAPS = ("commonLabels", "podLabels", "labels", "nodeSelector", "matchLabels", "clientPodLabels")
ANNOTATION_MAPS = ("annotations", "podAnnotations")
# Maps that become a Secret's data: keys are Secret keys.
SECRET_DATA_MAPS = ("auth.tokens",)


def _lookup(table: dict[str, Any], path: tuple[str, ...]) -> Any:
    for length in (2, 1):
        if len(path) >= length and ".".join(path[-length:]) in table:
            return table[".".join(path[-length:])]
    return None


class ValueFormats:
    """Applies the rules above to one chart's generated schema."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._kubernetes: dict[str, Any] | None = None

    def kubernetes_definitions(self) -> dict[str, Any]:
        if self._kubernetes is None:
            import kubernetes_validate

            folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
            definitions = folder / f"v{KUBERNETES_VERSION}.0-local-strict" / "_definitions.json"
            self._kubernetes = json.loads(definitions.read_text(encoding="utf-8"))["$defs"]
        return self._kubernetes

    def crd_field(self, file: str, path: str) -> dict[str, Any]:
        schema: dict[str, Any] = json.loads((self.project.ci_dir / "crd-schemas" / file).read_text(encoding="utf-8"))
        for step in path.split("."):
            many = step.endswith("[]")
            schema = schema["properties"][step.removesuffix("[]")]
            if many:
                schema = schema["items"]
        field: dict[str, Any] = _with_cel_rules(_without_descriptions(schema), f"{file} {path}")
        return field

    def apply(self, schema: dict[str, Any]) -> dict[str, Any]:
        used: set[str] = set()
        result = self._walk(schema, (), used)
        if used:
            result["$defs"] = self._closure(used)
        return result

    def _walk(self, schema: dict[str, Any], path: tuple[str, ...], used: set[str]) -> dict[str, Any]:
        described = {k: v for k, v in schema.items() if k in ("description", "default")}
        kubernetes = _lookup(KUBERNETES_OBJECTS, path) if path else None
        if kubernetes:
            definition, many = kubernetes
            used.add(definition)
            reference = {"$ref": f"#/$defs/{definition}"}
            return {**described, **({"type": "array", "items": reference} if many else reference)}
        properties = schema.get("properties")
        if properties:
            schema = {**schema, "properties": {k: self._walk(v, (*path, k), used) for k, v in properties.items()}}
            return self._map_keys(schema, path)
        crd = _lookup(CRD_FIELDS, path)
        if crd:
            return {**self.crd_field(*crd), **described}
        string_format = _lookup(STRING_FORMATS, path)
        if string_format and schema.get("type") == "array" and "enum" not in (schema.get("items") or {}):
            return {**schema, "items": {**_with_format(schema.get("items") or {}, string_format), "minLength": 1}}
        if string_format and "enum" not in schema:
            return _with_format(schema, string_format)
        return self._map_keys(schema, path)

    def _map_keys(self, schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        """Label maps: keys qualified names, values label values; annotation maps: keys qualified names."""
        name = path[-1] if path else ""
        if ".".join(path[-2:]) in SECRET_DATA_MAPS:
            return {**schema, "propertyNames": FORMATS["data-key"]}
        if name == "podSecurityExceptions":
            # container name -> departure (core/podsecurity.py) -> reason
            inner = {**schema.get("additionalProperties", {}), "propertyNames": {"enum": list(DECLARABLE)}}
            return {**schema, "propertyNames": FORMATS["dns-label"], "additionalProperties": inner}
        if name not in LABEL_MAPS and name not in ANNOTATION_MAPS:
            return schema
        result = {**schema, "propertyNames": FORMATS["qualified-name"]}
        if name in LABEL_MAPS:
            if isinstance(result.get("additionalProperties"), dict):
                result["additionalProperties"] = _with_format(result["additionalProperties"], "label-value")
            if result.get("properties"):
                result["properties"] = {
                    k: _with_format(v, "label-value") if v.get("type") == "string" else v
                    for k, v in result["properties"].items()
                }
        return result

    def _closure(self, names: set[str]) -> dict[str, Any]:
        definitions = self.kubernetes_definitions()
        found: dict[str, Any] = {}
        pending = sorted(names)
        while pending:
            name = pending.pop()
            if name in found:
                continue
            found[name] = _without_descriptions(definitions[name])
            pending.extend(re.findall(r'"#/\$defs/([^"]+)"', json.dumps(found[name])))
        if "io.k8s.api.core.v1.LocalObjectReference" in found:
            found["io.k8s.api.core.v1.LocalObjectReference"] = _required_name(
                found["io.k8s.api.core.v1.LocalObjectReference"]
            )
        return dict(sorted(found.items()))


def _with_cel_rules(schema: Any, where: str) -> Any:
    """The schema without its x-kubernetes-* markers: a list-type set becomes uniqueItems, each CEL rule
    CEL_RULES' JSON Schema."""
    if isinstance(schema, list):
        return [_with_cel_rules(item, where) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {k: _with_cel_rules(v, where) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":  # the API server refuses duplicate entries
        result["uniqueItems"] = True
    elif list_type == "map":
        raise NchartError(f"{where}: a list-map (keys unique per item) has no JSON Schema here", ExitCode.USAGE)
    for rule in schema.get("x-kubernetes-validations", []):
        if rule["rule"] not in CEL_RULES:
            raise NchartError(
                f"{where}: the CRD's rule {rule['rule']!r} ({rule.get('message', '')}) has no JSON Schema in "
                "tools/nchart/generate/value_formats.py CEL_RULES; add one, so render refuses what the API server would",
                ExitCode.USAGE,
            )
        for key, addition in CEL_RULES[rule["rule"]].items():
            result[key] = {**result.get(key, {}), **addition}
    return result


def _with_format(schema: dict[str, Any], name: str) -> dict[str, Any]:
    result = {k: v for k, v in schema.items() if k not in ("pattern", "maxLength")}
    return {**result, **FORMATS[name]}


def _required_name(schema: dict[str, Any]) -> dict[str, Any]:
    """A pull secret without a name is dropped with only a warning: the schema asks for one."""
    name = {**schema["properties"]["name"], "type": "string", **FORMATS["dns-subdomain"]}
    return {**schema, "properties": {**schema["properties"], "name": name}, "required": ["name"]}


def _without_descriptions(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_descriptions(v) for k, v in schema.items() if k != "description"}
    if isinstance(schema, list):
        return [_without_descriptions(v) for v in schema]
    return schema
