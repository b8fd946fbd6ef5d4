{{/* Chart name, overridable with nameOverride. */}}
{{- define "sd21-serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name; the release name alone when it already contains the chart name. */}}
{{- define "sd21-serving.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sd21-serving.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sd21-serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sd21-serving.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sd21-serving.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sd21-serving.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: inference
app.kubernetes.io/part-of: eks-neuron
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sd21-serving.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sd21-serving.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "sd21-serving.image" -}}
{{- printf "%s:%s" .repository (toString (default .defaultTag .tag)) }}
{{- end }}

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
