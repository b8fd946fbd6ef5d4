{{/*
Labels. The component (app.kubernetes.io/component) is the chart's own: the `eks-neuron/component`
annotation of its Chart.yaml.
*/}}

{{/*
The labels a workload's selector matches; never change them on a released chart.
  {{ include "eks-neuron-lib.selectorLabels" . }}
*/}}
{{- define "eks-neuron-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eks-neuron-lib.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/*
The recommended labels of every object, with commonLabels.
  {{ include "eks-neuron-lib.labels" . }}
*/}}
{{- define "eks-neuron-lib.labels" -}}
{{- include "eks-neuron-lib.componentLabels" (dict "context" . "component" (index .Chart.Annotations "eks-neuron/component")) }}
{{- end }}

{{/*
The same, for an object of another component than the chart's (e.g. a compile Job).
  {{ include "eks-neuron-lib.componentLabels" (dict "context" . "component" "compile") }}
*/}}
{{- define "eks-neuron-lib.componentLabels" -}}
{{- $context := .context }}
{{- if not .component }}
{{- fail (printf "%s: Chart.yaml needs the annotation eks-neuron/component (app.kubernetes.io/component of its objects)" $context.Chart.Name) }}
{{- end -}}
helm.sh/chart: {{ printf "%s-%s" $context.Chart.Name $context.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "eks-neuron-lib.selectorLabels" $context }}
app.kubernetes.io/version: {{ $context.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: eks-neuron
app.kubernetes.io/managed-by: {{ $context.Release.Service }}
{{- with $context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
