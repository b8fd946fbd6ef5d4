{{/*
The chart's ServiceAccount, when serviceAccount.create. serviceAccount.iamRoleArn (where the chart has
it) becomes the IRSA annotation eks.amazonaws.com/role-arn; with EKS Pod Identity leave it empty: the
role is associated with the ServiceAccount through the EKS API, nothing goes on the object.
Pass automountToken false for pods that need no API access.
  {{ include "eks-neuron-lib.serviceAccount" (dict "context" .) }}
  {{ include "eks-neuron-lib.serviceAccount" (dict "context" . "automountToken" false) }}
*/}}
{{- define "eks-neuron-lib.serviceAccount" -}}
{{- $context := .context }}
{{- $account := $context.Values.serviceAccount }}
{{- if $account.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "eks-neuron-lib.serviceAccountName" $context | quote }}
  namespace: {{ include "eks-neuron-lib.namespace" $context | quote }}
  labels:
    {{- include "eks-neuron-lib.labels" $context | nindent 4 }}
  {{- $annotations := deepCopy ($account.annotations | default dict) }}
  {{- with $account.iamRoleArn }}
  {{- $_ := set $annotations "eks.amazonaws.com/role-arn" . }}
  {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- if hasKey . "automountToken" }}
automountServiceAccountToken: {{ .automountToken }}
{{- end }}
{{- end }}
{{- end }}
