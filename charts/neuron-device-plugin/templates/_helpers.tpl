{{/* Chart name, overridable with nameOverride. */}}
{{- define "neuron-device-plugin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name; the release name alone when it already contains the chart name. */}}
{{- define "neuron-device-plugin.fullname" -}}
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

{{- define "neuron-device-plugin.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "neuron-device-plugin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "neuron-device-plugin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "neuron-device-plugin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "neuron-device-plugin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: device-plugin
app.kubernetes.io/part-of: eks-neuron
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "neuron-device-plugin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "neuron-device-plugin.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "neuron-device-plugin.image" -}}
{{- printf "%s:%s" .repository (toString (default .defaultTag .tag)) }}
{{- end }}

{{/*
Node affinity for Neuron nodes: only the listed Neuron instance types, and never
Fargate, hybrid or EKS Auto Mode compute, where Neuron DaemonSets cannot run.
*/}}
{{- define "neuron-device-plugin.neuronNodeAffinity" -}}
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
