{{/* The extended resource name and count one replica requests; both follow neuron.coresPerReplica. */}}
{{- define "sd21-serving.neuronResource" -}}
{{- $cores := int .coresPerReplica }}
{{- if eq .resource "neuroncore" }}
{{- dict "aws.amazon.com/neuroncore" $cores | toYaml }}
{{- else }}
{{- dict "aws.amazon.com/neuron" (div $cores (int .coresPerDevice)) | toYaml }}
{{- end }}
{{- end }}

{{/* Container resources (dict: resources, neuron): CPU/memory plus the Neuron resource in requests and limits. */}}
{{- define "sd21-serving.resources" -}}
{{- $neuron := include "sd21-serving.neuronResource" .neuron | fromYaml }}
{{- $requests := merge (deepCopy (default dict .resources.requests)) $neuron }}
{{- $limits := merge (deepCopy (default dict .resources.limits)) $neuron }}
{{- toYaml (dict "requests" $requests "limits" $limits) }}
{{- end }}

{{- define "sd21-serving.taintToleration" -}}
- key: {{ .Values.karpenter.taint.key }}
  operator: Exists
  effect: {{ .Values.karpenter.taint.effect }}
{{- end }}

{{- define "sd21-serving.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* The Pod Security level of the serving namespace: podSecurityLevel, else restricted (privileged with
the hostPath model cache, which even baseline forbids). */}}
{{- define "sd21-serving.podSecurityLevel" -}}
{{- .Values.podSecurityLevel | default (ternary "privileged" "restricted" (eq .Values.model.volume "hostPath")) }}
{{- end }}

{{/*
The server image. Without a tag: the chart's appVersion, suffixed as the release pipeline tags its
targets (-cpu, -cuda; the Neuron image has none, and `auto` runs it).
*/}}
{{- define "sd21-serving.image" -}}
{{- $suffix := get (dict "cpu" "-cpu" "cuda" "-cuda") .Values.server.backend | default "" }}
{{- $tag := .Values.image.tag | default (printf "%s%s" .Chart.AppVersion $suffix) }}
{{- include "eks-neuron-lib.image" (dict "image" (dict "repository" .Values.image.repository "tag" $tag) "context" .) }}
{{- end }}
