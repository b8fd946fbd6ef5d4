{{/* GOMEMLIMIT at 80% of the memory limit (Mi or Gi), or unset ("off") without one. */}}
{{- define "neuron-monitor.goMemLimit" -}}
{{- $limit := dig "limits" "memory" "" . | toString }}
{{- if hasSuffix "Mi" $limit }}
{{- printf "%dMiB" (div (mul (trimSuffix "Mi" $limit | int) 4) 5) | quote }}
{{- else if hasSuffix "Gi" $limit }}
{{- printf "%dMiB" (div (mul (trimSuffix "Gi" $limit | int) 4096) 5) | quote }}
{{- else }}
{{- "off" | quote }}
{{- end }}
{{- end }}
