{{/*
Extender Service name: extender.serviceName, else the name the neuron-scheduler chart gives its Service
in this release when it has no name overrides. (A subchart cannot see its sibling's values; the
umbrella chart checks the two agree and says what to set when they do not.)
*/}}
{{- define "my-scheduler.extenderServiceName" -}}
{{- .Values.extender.serviceName | default (include "eks-neuron-lib.dependencyFullname" (dict "chartName" "neuron-scheduler" "context" .)) }}
{{- end }}

{{- define "my-scheduler.leaseNamespace" -}}
{{- default (include "eks-neuron-lib.namespace" .) .Values.leaderElection.resourceNamespace }}
{{- end }}

{{/* KubeSchedulerConfiguration, built as data so its shape is always valid YAML. */}}
{{- define "my-scheduler.config" -}}
{{- $ext := .Values.extender }}
{{- $extNamespace := default (include "eks-neuron-lib.namespace" .) $ext.namespace }}
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

{{/*
kube-scheduler image: image.tag, else the cluster's own version (.Capabilities.KubeVersion, the
distribution suffix such as -eks-1d4a2e6 stripped), so my-scheduler always matches the API server.
*/}}
{{- define "my-scheduler.image" -}}
{{- $tag := .Values.image.tag }}
{{- if not $tag }}
{{- $version := regexFind "^v?[0-9]+\\.[0-9]+\\.[0-9]+" .Capabilities.KubeVersion.Version }}
{{- $tag = printf "v%s" (trimPrefix "v" $version) }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
