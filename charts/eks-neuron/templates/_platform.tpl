{{/*
The add-on kinds these values create, as JSON: group/version/Kind -> the values that turn each off.
Read by the install preflight and NOTES.txt.
*/}}
{{- define "eks-neuron.platformNeeds" -}}
{{- $needed := dict }}
{{- range $chart := list "my-scheduler" "neuron-monitor" "neuron-problem-detector" "sd21-serving" }}
{{- $values := index $.Values $chart }}
{{- if $values.enabled }}
{{- range $kind, $key := dict "monitoring.coreos.com/v1/ServiceMonitor" "serviceMonitor" "monitoring.coreos.com/v1/PrometheusRule" "prometheusRule" }}
{{- if dig $key "enabled" false $values }}
{{- $_ := set $needed $kind (append (get $needed $kind | default list) (printf "%s.%s.enabled=false" $chart $key)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $serving := index .Values "sd21-serving" }}
{{- if $serving.enabled }}
{{- if eq (dig "autoscaling" "mode" "none" $serving) "keda" }}
{{- $_ := set $needed "keda.sh/v1alpha1/ScaledObject" (list "sd21-serving.autoscaling.mode=hpa (or none)") }}
{{- end }}
{{- if dig "karpenter" "enabled" false $serving }}
{{- $_ := set $needed "karpenter.sh/v1/NodePool" (list "sd21-serving.karpenter.enabled=false") }}
{{- $_ := set $needed "karpenter.k8s.aws/v1/EC2NodeClass" (list "sd21-serving.karpenter.enabled=false") }}
{{- end }}
{{- end }}
{{- toJson $needed }}
{{- end }}

{{/* files/platform.json (generated from terraform/addons.yaml): kinds and dashboards. */}}
{{- define "eks-neuron.platform" -}}
{{- .Files.Get "files/platform.json" }}
{{- end }}
