{{/*
Node affinity of the Neuron node DaemonSets: only the instance types in global.neuron.instanceTypes,
never the compute types in excludedComputeTypes (Fargate, hybrid, EKS Auto Mode), where a Neuron
DaemonSet cannot run. `deviceManager` ("device-plugin" or "dra") keeps the device plugin and the DRA
driver apart: nodes labelled global.neuron.deviceManagerLabel=dra get the DRA driver, all others the
device plugin.
  affinity:
    {{- include "eks-neuron-lib.neuronNodeAffinity" (dict "context" .) | nindent 8 }}
    {{- include "eks-neuron-lib.neuronNodeAffinity" (dict "context" . "deviceManager" "dra") | nindent 8 }}
*/}}
{{- define "eks-neuron-lib.neuronNodeAffinity" -}}
{{- $values := .context.Values }}
{{- $types := $values.global.neuron.instanceTypes }}
{{- if not $types }}
{{- fail "global.neuron.instanceTypes is empty: list the Neuron instance types this component runs on (e.g. [inf2.xlarge])" }}
{{- end }}
{{- $label := dig "deviceManagerLabel" "" $values.global.neuron -}}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      - matchExpressions:
          - key: node.kubernetes.io/instance-type
            operator: In
            values:
              {{- toYaml $types | nindent 14 }}
          {{- with $values.excludedComputeTypes }}
          - key: eks.amazonaws.com/compute-type
            operator: NotIn
            values:
              {{- toYaml . | nindent 14 }}
          {{- end }}
          {{- if and $label (eq (.deviceManager | default "") "device-plugin") }}
          - key: {{ $label | quote }}
            operator: NotIn
            values: ["dra"]
          {{- else if and $label (eq (.deviceManager | default "") "dra") }}
          - key: {{ $label | quote }}
            operator: In
            values: ["dra"]
          {{- end }}
{{- end }}
