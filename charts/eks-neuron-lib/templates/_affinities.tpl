{{/*
Node affinity of the Neuron node DaemonSets: only the instance types in global.neuron.instanceTypes,
and never the compute types in excludedComputeTypes (Fargate, hybrid, EKS Auto Mode), where a Neuron
DaemonSet cannot run.
  affinity:
    {{- include "eks-neuron-lib.neuronNodeAffinity" . | nindent 8 }}
*/}}
{{- define "eks-neuron-lib.neuronNodeAffinity" -}}
{{- $types := .Values.global.neuron.instanceTypes }}
{{- if not $types }}
{{- fail "global.neuron.instanceTypes is empty: list the Neuron instance types this component runs on (e.g. [inf2.xlarge])" }}
{{- end -}}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      - matchExpressions:
          - key: node.kubernetes.io/instance-type
            operator: In
            values:
              {{- toYaml $types | nindent 14 }}
          - key: eks.amazonaws.com/compute-type
            operator: NotIn
            values:
              {{- toYaml .Values.excludedComputeTypes | nindent 14 }}
{{- end }}
