{{/*
A prometheus-operator ServiceMonitor for the chart's Service (selected by its selector labels in the
chart's namespace), labelled with global.monitoring.labels and serviceMonitor.labels for the Prometheus
serviceMonitorSelector.
`endpoints` is the chart's own endpoint list, as YAML.
  {{ include "eks-neuron-lib.serviceMonitor" (dict "context" . "endpoints" (include "my-chart.endpoints" .)) }}
*/}}
{{- define "eks-neuron-lib.serviceMonitor" -}}
{{- $context := .context }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "eks-neuron-lib.fullname" $context | quote }}
  namespace: {{ include "eks-neuron-lib.namespace" $context | quote }}
  labels:
    {{- include "eks-neuron-lib.labels" $context | nindent 4 }}
    {{- with include "eks-neuron-lib.monitoringLabels" (dict "labels" $context.Values.serviceMonitor.labels "context" $context) }}
    {{- . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "eks-neuron-lib.selectorLabels" $context | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ include "eks-neuron-lib.namespace" $context | quote }}
  endpoints:
    {{- .endpoints | trim | nindent 4 }}
{{- end }}

{{/*
A prometheus-operator PrometheusRule holding the chart's rule groups (YAML), labelled with
global.monitoring.labels and prometheusRule.labels for the Prometheus ruleSelector.
  {{ include "eks-neuron-lib.prometheusRule" (dict "context" . "groups" (include "my-chart.ruleGroups" .)) }}
*/}}
{{- define "eks-neuron-lib.prometheusRule" -}}
{{- $context := .context }}
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ include "eks-neuron-lib.fullname" $context | quote }}
  namespace: {{ include "eks-neuron-lib.namespace" $context | quote }}
  labels:
    {{- include "eks-neuron-lib.labels" $context | nindent 4 }}
    {{- with include "eks-neuron-lib.monitoringLabels" (dict "labels" $context.Values.prometheusRule.labels "context" $context) }}
    {{- . | nindent 4 }}
    {{- end }}
spec:
  groups:
    {{- .groups | trim | nindent 4 }}
{{- end }}

{{/*
The release-wide labels Prometheus selects by (global.monitoring.labels, set once) with the chart's own
(its serviceMonitor.labels or prometheusRule.labels, which win on a shared key), as YAML.
*/}}
{{- define "eks-neuron-lib.monitoringLabels" -}}
{{- $global := dig "monitoring" "labels" dict (.context.Values.global | default dict) }}
{{- $labels := merge (deepCopy (.labels | default dict)) $global }}
{{- with $labels }}{{ toYaml . }}{{ end }}
{{- end }}
