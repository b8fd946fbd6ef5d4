{{/*
Names. Every helper takes the including chart's context (`.`) unless it says otherwise.
*/}}

{{/*
The chart name, or nameOverride.
  {{ include "eks-neuron-lib.name" . }}
*/}}
{{- define "eks-neuron-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of this chart's objects: fullnameOverride, else release-chart (the release name alone
when it already contains the chart name).
  {{ include "eks-neuron-lib.fullname" . }}
*/}}
{{- define "eks-neuron-lib.fullname" -}}
{{- include "eks-neuron-lib.dependencyFullname" (dict "chartName" .Chart.Name "chartValues" .Values "context" .) }}
{{- end }}

{{/*
The full name another chart of the same release gives its objects, from that chart's name and values
(its nameOverride / fullnameOverride). The umbrella chart, which sees every subchart's values, uses it
to check the names one subchart refers to in another.
  {{ include "eks-neuron-lib.dependencyFullname" (dict "chartName" "neuron-scheduler" "chartValues" (index .Values "neuron-scheduler") "context" $) }}
*/}}
{{- define "eks-neuron-lib.dependencyFullname" -}}
{{- $values := .chartValues | default dict }}
{{- if $values.fullnameOverride }}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .chartName $values.nameOverride }}
{{- if contains $name .context.Release.Name }}
{{- .context.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .context.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The namespace of this chart's objects: namespaceOverride, else the release namespace.
  {{ include "eks-neuron-lib.namespace" . }}
*/}}
{{- define "eks-neuron-lib.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The ServiceAccount the chart's pods run as: serviceAccount.name, else the full name when the chart
creates it, else "default".
  {{ include "eks-neuron-lib.serviceAccountName" . }}
*/}}
{{- define "eks-neuron-lib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eks-neuron-lib.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
