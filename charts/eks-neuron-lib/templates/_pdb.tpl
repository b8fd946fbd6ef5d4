{{/*
A PodDisruptionBudget for the chart's pods, when podDisruptionBudget.enabled and more than one replica
can run. It takes minAvailable or maxUnavailable, whichever podDisruptionBudget sets.
  {{ include "eks-neuron-lib.podDisruptionBudget" (dict "context" . "replicas" .Values.replicaCount) }}
`suffix` names a second budget of the same chart, over the pods `podLabels` selects.
*/}}
{{- define "eks-neuron-lib.podDisruptionBudget" -}}
{{- $context := .context }}
{{- $budget := $context.Values.podDisruptionBudget }}
{{- if and $budget.enabled (gt (int .replicas) 1) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "eks-neuron-lib.fullname" $context | printf (ternary "%s" (printf "%%s-%s" (.suffix | default "")) (empty .suffix)) | quote }}
  namespace: {{ include "eks-neuron-lib.namespace" $context | quote }}
  labels:
    {{- include "eks-neuron-lib.labels" $context | nindent 4 }}
spec:
  {{- if hasKey $budget "minAvailable" }}
  minAvailable: {{ $budget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $budget.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- if .podLabels }}
      {{- .podLabels | trim | nindent 6 }}
      {{- else }}
      {{- include "eks-neuron-lib.selectorLabels" $context | nindent 6 }}
      {{- end }}
{{- end }}
{{- end }}
