{{/*
A workload's Pod Security exceptions, from the chart's podSecurityExceptions value (container ->
departure -> reason), as annotations on the workload: eks-neuron.io/pod-security-exceptions (JSON,
which `nchart lint` and the tests hold the rendered pod spec against: exactly these departures from
the restricted profile, no other) and kube-score/ignore (the kube-score checks those departures
answer). Departures: privileged, runAsRoot, hostPath, hostNetwork, writableRootFilesystem. Pass
`exceptions` for departures that follow from other values (e.g. an opt-in hostPath volume).
  metadata:
    annotations:
      {{- include "eks-neuron-lib.podSecurityAnnotations" (dict "context" .) | nindent 6 }}
      {{- include "eks-neuron-lib.podSecurityAnnotations" (dict "context" . "exceptions" $computed) | nindent 6 }}
*/}}
{{- define "eks-neuron-lib.podSecurityAnnotations" -}}
{{- $exceptions := .exceptions | default (.context.Values.podSecurityExceptions | default dict) }}
{{- $kubeScore := dict "privileged" "container-security-context-privileged" "runAsRoot" "container-security-context-user-group-id" "writableRootFilesystem" "container-security-context-readonlyrootfilesystem" }}
{{- $ignored := dict }}
{{- range $container, $departures := $exceptions }}
{{- range $departure, $reason := $departures }}
{{- with get $kubeScore $departure }}
{{- $_ := set $ignored . true }}
{{- end }}
{{- end }}
{{- end -}}
eks-neuron.io/pod-security-exceptions: {{ toJson $exceptions | quote }}
{{- with keys $ignored | sortAlpha }}
kube-score/ignore: {{ join "," . }}
{{- end }}
{{- end }}
