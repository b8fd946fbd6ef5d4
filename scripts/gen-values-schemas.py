#!/usr/bin/env python3
"""Writes charts/*/values.schema.json: strict schemas (a typo'd key is an error) built from shared pieces.

    python scripts/gen-values-schemas.py          # rewrite the schemas
    python scripts/gen-values-schemas.py --check  # exit 1 if a committed schema differs
"""

import json
import sys
from pathlib import Path

CHARTS = Path(__file__).resolve().parents[1] / "charts"
CHECK = "--check" in sys.argv[1:]
STALE: list[str] = []


def obj(props, required=(), extra=False):
    """An object of our own shape: only the listed keys."""
    schema = {"type": "object", "additionalProperties": extra, "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


S = {"type": "string"}
B = {"type": "boolean"}
K8S = {"type": "object", "description": "A Kubernetes object of this field's API type, passed through."}
MAP = {"type": "object", "additionalProperties": {"type": "string"}}
LIST = {"type": "array", "items": {"type": "object"}}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
PULL = {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]}
IMAGE = obj({"repository": {"type": "string", "minLength": 1}, "tag": {"type": ["string"]}, "pullPolicy": PULL}, ["repository"])
RESOURCES = obj({"requests": obj({}, extra={"type": ["string", "integer", "number"]}),
                 "limits": obj({}, extra={"type": ["string", "integer", "number"]})})
INSTANCE_TYPE = {"type": "string", "pattern": r"^(inf1|inf2|trn1|trn1n|trn2)\.[0-9]*x?large$"}
GLOBAL = {"type": "object", "additionalProperties": True, "properties": {
    "clusterName": {"type": "string", "minLength": 1},
    "neuron": {"type": "object", "additionalProperties": True, "properties": {
        "schedulerName": {"type": "string"},
        "instanceTypes": {"type": "array", "items": INSTANCE_TYPE, "minItems": 1, "uniqueItems": True},
        "instance": {"type": "object"}}}}}
SA = obj({"create": B, "name": S, "annotations": MAP})
SA_IRSA = obj({"create": B, "name": S, "annotations": MAP, "iamRoleArn": {"type": "string", "pattern": r"^(arn:aws[a-z-]*:iam::[0-9]{12}:role/.+)?$"}})
RBAC = obj({"create": B})
PDB = obj({"enabled": B, "minAvailable": {"type": ["integer", "string"]}})
UPDATE = K8S
RUNBOOK = {"type": "string", "pattern": "^https?://"}
SIMPLE_SERVICE_MONITOR = obj({"enabled": B, "interval": DURATION, "labels": MAP})


def prometheus_rule(**thresholds):
    return obj({"enabled": B, "labels": MAP, "runbookBaseUrl": RUNBOOK, **thresholds})

COMPUTE = {"type": "array", "items": S}


def common():
    """Keys every chart of ours has."""
    return {
        "enabled": {"type": "boolean", "description": "Set by the umbrella chart condition."},
        "nameOverride": S, "fullnameOverride": S, "namespaceOverride": S, "commonLabels": MAP,
        "image": IMAGE, "imagePullSecrets": LIST, "serviceAccount": SA,
        "priorityClassName": S, "resources": RESOURCES, "nodeSelector": MAP, "tolerations": LIST,
        "podAnnotations": MAP, "podLabels": MAP,
    }


def node_daemonset():
    """Keys of the charts that run a DaemonSet on Neuron nodes."""
    return {**common(), "global": GLOBAL, "excludedComputeTypes": COMPUTE, "updateStrategy": UPDATE}


def write(chart, props, title):
    schema = {"$schema": "https://json-schema.org/draft-07/schema#", "title": title, **obj(props)}
    path = CHARTS / chart / "values.schema.json"
    text = json.dumps(schema, indent=2) + "\n"
    if CHECK:
        if not path.is_file() or path.read_text() != text:
            STALE.append(str(path))
    else:
        path.write_text(text)


p = node_daemonset(); p.update({"rbac": RBAC, "livenessProbe": K8S, "extraEnv": LIST})
write("neuron-device-plugin", p, "neuron-device-plugin values")

p = common(); p.update({"global": {"type": "object"}, "replicaCount": {"type": "integer", "minimum": 1}, "port": PORT,
    "service": obj({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}}), "rbac": RBAC,
    "podDisruptionBudget": PDB, "podSecurityContext": K8S, "securityContext": K8S, "livenessProbe": K8S,
    "readinessProbe": K8S, "affinity": K8S, "topologySpreadConstraints": LIST})
write("neuron-scheduler", p, "neuron-scheduler values")

p = common(); p.update({"global": {"type": "object"}, "schedulerName": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    "replicaCount": {"type": "integer", "minimum": 1}, "logLevel": {"type": "integer", "minimum": 0, "maximum": 10},
    "leaderElection": obj({"enabled": B, "resourceName": {"type": "string", "minLength": 1}, "resourceNamespace": S,
                           "leaseDuration": DURATION, "renewDeadline": DURATION, "retryPeriod": DURATION}),
    "extender": obj({"serviceName": S, "namespace": S, "port": PORT, "clusterDomain": {"type": "string", "minLength": 1},
                     "managedResources": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": r"^aws\.amazon\.com/neuron(core|device)?$"}},
                     "ignorable": B, "httpTimeout": DURATION}),
    "rbac": RBAC, "podDisruptionBudget": PDB, "podSecurityContext": K8S, "securityContext": K8S,
    "serviceMonitor": SIMPLE_SERVICE_MONITOR, "prometheusRule": prometheus_rule(),
    "livenessProbe": K8S, "readinessProbe": K8S, "affinity": K8S, "topologySpreadConstraints": LIST})
write("my-scheduler", p, "my-scheduler values")

p = node_daemonset(); p.update({"port": PORT, "service": obj({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, "annotations": MAP}),
    "serviceMonitor": obj({"enabled": B, "interval": DURATION, "scrapeTimeout": DURATION, "labels": MAP,
                           "metricRelabelings": LIST, "relabelings": LIST}),
    "prometheusRule": prometheus_rule(executionErrorsPerSecond={"type": "number", "exclusiveMinimum": 0}),
    "livenessProbe": K8S, "readinessProbe": K8S})
write("neuron-monitor", p, "neuron-monitor values")

p = node_daemonset(); p.update({"serviceAccount": SA_IRSA, "rbac": RBAC, "port": PORT, "metricsPort": PORT,
    "serviceMonitor": SIMPLE_SERVICE_MONITOR, "prometheusRule": prometheus_rule(),
    "conditionType": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9]*$"},
    "hardwareErrors": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Z0-9_]+$"}, "uniqueItems": True},
    "lookback": DURATION,
    "recovery": obj({"enabled": B, "image": IMAGE, "enableRecovery": B, "resources": RESOURCES}),
    "livenessProbe": K8S})
write("neuron-problem-detector", p, "neuron-problem-detector values")

write("grafana-dashboards", {
    "enabled": {"type": "boolean", "description": "Set by the umbrella chart condition."},
    "global": {"type": "object"},
    "nameOverride": S, "fullnameOverride": S, "namespaceOverride": S, "commonLabels": MAP,
    "sidecar": obj({"label": {"type": "string", "minLength": 1}, "labelValue": S,
                    "folderAnnotation": {"type": "string", "minLength": 1}, "folder": S}),
    "dashboards": {"type": "array", "items": S, "uniqueItems": True},
}, "grafana-dashboards values")

# Umbrella: the shape of each subchart section is checked by that subchart's own schema.
sub = lambda desc: {"type": "object", "description": desc, "properties": {"enabled": B}, "required": ["enabled"]}
write("eks-neuron", {
    "global": GLOBAL,
    "neuron-device-plugin": sub("neuron-device-plugin subchart values"),
    "neuron-scheduler": sub("neuron-scheduler subchart values"),
    "my-scheduler": sub("my-scheduler subchart values"),
    "neuron-monitor": sub("neuron-monitor subchart values"),
    "neuron-problem-detector": sub("neuron-problem-detector subchart values"),
    "sd21-serving": sub("sd21-serving subchart values"),
    "grafana-dashboards": sub("grafana-dashboards subchart values"),
}, "eks-neuron values")

# --- sd21-serving ---
NEURON_RESOURCE = {"type": "string", "enum": ["neuroncore", "neuron"]}
TAINT_EFFECT = {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]}
S3_URI_OR_EMPTY = {"type": "string", "pattern": r"^(s3://[^/]+/.+)?$"}
pool = lambda: obj({"enabled": B, "families": {"type": "array", "items": S, "minItems": 1},
                    "sizes": {"type": "array", "items": S, "minItems": 1},
                    "capacityTypes": {"type": "array", "items": {"enum": ["on-demand", "spot", "reserved"]}, "minItems": 1},
                    "cpuLimit": {"type": "integer", "minimum": 1}, "weight": {"type": "integer", "minimum": 0, "maximum": 100}})
p = common(); p.pop("resources")
p.update({
    "global": {"type": "object", "additionalProperties": True, "properties": {
        "clusterName": {"type": "string", "minLength": 1},
        "neuron": {"type": "object", "additionalProperties": True, "properties": {
            "schedulerName": S, "instance": {"type": "object"}}}}},
    "replicaCount": {"type": "integer", "minimum": 0},
    "replicasPerNode": {"type": "integer", "minimum": 1, "description": "Set by nchart render: replicas that fit one node of the target instance type."},
    "neuron": obj({"resource": NEURON_RESOURCE, "coresPerReplica": {"type": "integer", "minimum": 1},
                   "coresPerDevice": {"type": "integer", "minimum": 1}}),
    "server": obj({"backend": {"enum": ["neuron", "cuda", "cpu", "auto"]}, "maxBatchSize": {"type": "integer", "minimum": 1, "maximum": 64},
                   "maxBatchWaitMs": {"type": "number", "minimum": 0}, "maxQueue": {"type": "integer", "minimum": 1},
                   "requestTimeoutSeconds": {"type": "number", "exclusiveMinimum": 0},
                   "defaultSteps": {"type": "integer", "minimum": 1, "maximum": 150}, "port": PORT, "extraEnv": LIST}),
    "model": obj({"s3Uri": S3_URI_OR_EMPTY, "sha256": {"type": "string", "pattern": "^([0-9a-f]{64})?$"},
                  "mountPath": {"type": "string", "pattern": "^/"}, "volume": {"enum": ["emptyDir", "hostPath"]},
                  "emptyDirSizeLimit": S, "hostPath": S,
                  "fetch": obj({"image": {"type": "string", "minLength": 1}, "command": {"type": "array", "items": S, "minItems": 1},
                                "resources": RESOURCES})}),
    "serviceAccount": SA_IRSA,
    "resources": RESOURCES,
    "startupProbe": K8S, "readinessProbe": K8S, "livenessProbe": K8S,
    "terminationGracePeriodSeconds": {"type": "integer", "minimum": 15},
    "affinity": K8S, "topologySpreadConstraints": LIST,
    "podDisruptionBudget": obj({"enabled": B, "maxUnavailable": {"type": ["integer", "string"]}}),
    "service": obj({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, "port": PORT, "annotations": MAP}),
    "ingress": obj({"enabled": B, "className": S, "annotations": MAP, "host": S, "tlsSecretName": S}),
    "serviceMonitor": SIMPLE_SERVICE_MONITOR,
    "prometheusRule": prometheus_rule(
        p99LatencySLOSeconds={"type": "number", "exclusiveMinimum": 0},
        queueSaturationRatio={"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        errorRatio={"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
    "autoscaling": obj({"mode": {"enum": ["none", "hpa", "keda"]}, "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 1},
                        "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
                        "keda": obj({"prometheusServerAddress": {"type": "string", "pattern": "^https?://"},
                                     "targetRequestsPerReplica": {"type": "number", "exclusiveMinimum": 0},
                                     "pollingInterval": {"type": "integer", "minimum": 1}, "cooldownPeriod": {"type": "integer", "minimum": 0}})}),
    "compileJob": obj({"enabled": B, "sourceS3Uri": S3_URI_OR_EMPTY, "resources": RESOURCES,
                       "activeDeadlineSeconds": {"type": "integer", "minimum": 60}}),
    "karpenter": obj({"enabled": B,
                      "taint": obj({"key": {"type": "string", "minLength": 1}, "value": S, "effect": TAINT_EFFECT}),
                      "nodeClass": obj({"role": {"type": "string", "minLength": 1}, "amiAlias": {"type": "string", "pattern": r"^[a-z0-9]+@.+$"},
                                        "volumeSize": S, "volumeType": {"enum": ["gp3", "gp2", "io1", "io2"]}}),
                      "nodePools": obj({"inf2": pool(), "trn1": pool()}),
                      "disruption": obj({"consolidationPolicy": {"enum": ["WhenEmpty", "WhenEmptyOrUnderutilized"]},
                                         "consolidateAfter": S, "budgets": LIST}),
                      "expireAfter": S}),
})
write("sd21-serving", p, "sd21-serving values")

if STALE:
    print("stale (run scripts/gen-values-schemas.py):\n  " + "\n  ".join(STALE), file=sys.stderr)
    sys.exit(1)
