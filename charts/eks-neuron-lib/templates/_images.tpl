{{/*
An image reference, repository:tag, the tag defaulting to the chart's appVersion.
  image: {{ include "eks-neuron-lib.image" (dict "image" .Values.image "context" .) }}
*/}}
{{- define "eks-neuron-lib.image" -}}
{{- printf "%s:%s" .image.repository (toString (default .context.Chart.AppVersion .image.tag)) }}
{{- end }}
