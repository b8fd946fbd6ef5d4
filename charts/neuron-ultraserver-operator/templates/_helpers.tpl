{{- /* What the operator may do in the API, for the ClusterRole: upstream's grants (the official
chart's templates/ultraserver-operator/ultraserver-operator-rbac.yaml), each with its reason. */}}
{{- define "neuron-ultraserver-operator.rbacRules" -}}
# It groups nodes into UltraServers from the DRA driver's ResourceSlices and checks membership on the nodes.
- apiGroups: ["resource.k8s.io"]
  resources: ["resourceslices"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
# It writes the ResourceClaimTemplate a workload's pods claim their UltraServer nodes with.
- apiGroups: ["resource.k8s.io"]
  resources: ["resourceclaimtemplates"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Its own resources and their status.
- apiGroups: ["neuron.aws.com"]
  resources: ["neuronultraservers", "neuronultraserverworkloads"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["neuron.aws.com"]
  resources: ["neuronultraservers/status", "neuronultraserverworkloads/status"]
  verbs: ["get", "update", "patch"]
- apiGroups: ["neuron.aws.com"]
  resources: ["neuronultraserverworkloads/finalizers"]
  verbs: ["update"]
# Leader election.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Failure recovery evicts a workload's pods from a failed UltraServer node.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
{{- end }}

{{- /* Default affinity: any Linux node but the Neuron instance types, whose accelerators a controller
would only keep from workloads. */}}
{{- define "neuron-ultraserver-operator.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else -}}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      - matchExpressions:
          - key: kubernetes.io/os
            operator: In
            values: ["linux"]
          {{- with dig "neuron" "instanceTypes" list (.Values.global | default dict) }}
          - key: node.kubernetes.io/instance-type
            operator: NotIn
            values:
              {{- toYaml . | nindent 14 }}
          {{- end }}
{{- end }}
{{- end }}
