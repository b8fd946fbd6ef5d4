{{/*
A ClusterRole with the chart's rules (YAML) and its binding to the chart's ServiceAccount, both named
after the chart, when rbac.create.
  {{ include "eks-neuron-lib.clusterRole" (dict "context" . "rules" (include "my-chart.rbacRules" .)) }}
*/}}
{{- define "eks-neuron-lib.clusterRole" -}}
{{- $context := .context }}
{{- if $context.Values.rbac.create }}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ include "eks-neuron-lib.fullname" $context | quote }}
  labels:
    {{- include "eks-neuron-lib.labels" $context | nindent 4 }}
rules:
  {{- .rules | trim | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ include "eks-neuron-lib.fullname" $context | quote }}
  labels:
    {{- include "eks-neuron-lib.labels" $context | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ include "eks-neuron-lib.fullname" $context | quote }}
subjects:
  - kind: ServiceAccount
    name: {{ include "eks-neuron-lib.serviceAccountName" $context | quote }}
    namespace: {{ include "eks-neuron-lib.namespace" $context | quote }}
{{- end }}
{{- end }}
