{{/* Chart name, overridable with nameOverride. */}}
{{- define "my-scheduler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name; the release name alone when it already contains the chart name. */}}
{{- define "my-scheduler.fullname" -}}
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

{{- define "my-scheduler.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "my-scheduler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "my-scheduler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "my-scheduler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "my-scheduler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: scheduler
app.kubernetes.io/part-of: eks-neuron
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "my-scheduler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "my-scheduler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "my-scheduler.image" -}}
{{- printf "%s:%s" .repository (toString (default .defaultTag .tag)) }}
{{- end }}

{{/* Extender Service name: the neuron-scheduler chart's default full name in this release. */}}
{{- define "my-scheduler.extenderServiceName" -}}
{{- if .Values.extender.serviceName }}
{{- .Values.extender.serviceName }}
{{- else if contains "neuron-scheduler" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-neuron-scheduler" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "my-scheduler.leaseNamespace" -}}
{{- default (include "my-scheduler.namespace" .) .Values.leaderElection.resourceNamespace }}
{{- end }}

{{/* KubeSchedulerConfiguration, built as data so its shape is always valid YAML. */}}
{{- define "my-scheduler.config" -}}
{{- $ext := .Values.extender }}
{{- $extNamespace := default (include "my-scheduler.namespace" .) $ext.namespace }}
{{- $managed := list }}
{{- range $ext.managedResources }}
{{- $managed = append $managed (dict "name" . "ignoredByScheduler" false) }}
{{- end }}
{{- $extender := dict
    "urlPrefix" (printf "http://%s.%s.svc.%s:%d" (include "my-scheduler.extenderServiceName" .) $extNamespace $ext.clusterDomain (int $ext.port))
    "filterVerb" "filter"
    "bindVerb" "bind"
    "enableHTTPS" false
    "nodeCacheCapable" false
    "ignorable" $ext.ignorable
    "httpTimeout" $ext.httpTimeout
    "managedResources" $managed }}
{{- $le := .Values.leaderElection }}
{{- $leaderElection := dict "leaderElect" $le.enabled }}
{{- if $le.enabled }}
{{- $_ := set $leaderElection "resourceLock" "leases" }}
{{- $_ := set $leaderElection "resourceName" $le.resourceName }}
{{- $_ := set $leaderElection "resourceNamespace" (include "my-scheduler.leaseNamespace" .) }}
{{- $_ := set $leaderElection "leaseDuration" $le.leaseDuration }}
{{- $_ := set $leaderElection "renewDeadline" $le.renewDeadline }}
{{- $_ := set $leaderElection "retryPeriod" $le.retryPeriod }}
{{- end }}
{{- $config := dict
    "apiVersion" "kubescheduler.config.k8s.io/v1"
    "kind" "KubeSchedulerConfiguration"
    "profiles" (list (dict "schedulerName" .Values.schedulerName))
    "extenders" (list $extender)
    "leaderElection" $leaderElection }}
{{- toYaml $config }}
{{- end }}
