{{/* Chart name, overridable with nameOverride. */}}
{{- define "neuron-problem-detector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name; the release name alone when it already contains the chart name. */}}
{{- define "neuron-problem-detector.fullname" -}}
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

{{- define "neuron-problem-detector.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "neuron-problem-detector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "neuron-problem-detector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "neuron-problem-detector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "neuron-problem-detector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-problem-detector
app.kubernetes.io/part-of: eks-neuron
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "neuron-problem-detector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "neuron-problem-detector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "neuron-problem-detector.image" -}}
{{- printf "%s:%s" .repository (toString (default .defaultTag .tag)) }}
{{- end }}

{{/*
Node affinity for Neuron nodes: only the listed Neuron instance types, and never
Fargate, hybrid or EKS Auto Mode compute, where Neuron DaemonSets cannot run.
*/}}
{{- define "neuron-problem-detector.neuronNodeAffinity" -}}
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

{{/* The kmsg monitor config: one permanent NeuronHealth rule per hardware error. */}}
{{- define "neuron-problem-detector.kernelMonitor" -}}
{{- $rules := list }}
{{- range .Values.hardwareErrors }}
{{- $rules = append $rules (dict
    "type" "permanent"
    "condition" $.Values.conditionType
    "reason" (printf "NeuronHasError_%s" .)
    "pattern" (printf ".* NEURON_HW_ERR=%s .*" .)) }}
{{- end }}
{{- $config := dict
    "plugin" "kmsg"
    "logPath" "/dev/kmsg"
    "lookback" .Values.lookback
    "bufferSize" 10
    "source" "kernel-monitor"
    "conditions" (list (dict "type" .Values.conditionType "reason" "NeuronHasNoError" "message" "Neuron has no error"))
    "rules" $rules }}
{{- toPrettyJson $config }}
{{- end }}
