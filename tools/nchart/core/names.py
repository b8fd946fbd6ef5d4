"""The Kubernetes and Neuron names the project uses, once: extended resources, labels, taints,
annotations (the charts write the same names; tests check that they agree)."""

from __future__ import annotations

# The Neuron device plugin's extended resources (whole devices, single NeuronCores).
NEURON = "aws.amazon.com/neuron"
NEURONCORE = "aws.amazon.com/neuroncore"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# Which logical NeuronCore config a trn2 node runs at, and which device manager (device plugin or DRA).
LNC_LABEL = "eks-neuron.io/logical-neuroncore-config"
DEVICE_MANAGER_LABEL = "eks-neuron.io/device-manager"
# The taint the NodePools put on Neuron nodes (sd21-serving's karpenter.taint default).
NEURON_TAINT = {"key": NEURON, "value": "true", "effect": "NoSchedule"}
# The scheduler extender's allocation state, kept in node annotations.
USAGE_MAPS = ("NEURON_DEV_USAGE_MAP", "NEURON_CORE_USAGE_MAP")
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
POD_SECURITY_EXCEPTIONS_ANNOTATION = "eks-neuron.io/pod-security-exceptions"
# The release name and namespace nchart renders and installs with unless told otherwise.
DEFAULT_RELEASE = "eks-neuron"
DEFAULT_NAMESPACE = "kube-system"
