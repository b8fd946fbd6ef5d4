{{/*
NetworkPolicies. A chart's policy exists when its networkPolicy.enabled says so, or, left null, when
global.networkPolicy.enabled does (the environment files turn it on once for every chart). Traffic
from the pod's own node (the kubelet's probes) is always allowed whatever the policy says
(https://kubernetes.io/docs/concepts/services-networking/network-policies/), so probes need no rule.
*/}}

{{/*
"true" when the chart's NetworkPolicies are on, else "".
  {{ if include "eks-neuron-lib.networkPolicyEnabled" . }}
*/}}
{{- define "eks-neuron-lib.networkPolicyEnabled" -}}
{{- $own := (.Values.networkPolicy | default dict).enabled }}
{{- $global := dig "networkPolicy" "enabled" false (.Values.global | default dict) }}
{{- if kindIs "bool" $own }}{{ if $own }}true{{ end }}{{ else if $global }}true{{ end }}
{{- end }}

{{/*
The NetworkPolicyPeer of the monitoring stack, as a one-item YAML list: the pods of
global.networkPolicy.monitoring.podSelector in the namespaces of its namespaceSelector (default: every
pod of the `monitoring` namespace, where terraform/ installs kube-prometheus-stack).
  from: {{- include "eks-neuron-lib.monitoringPeers" . | nindent 8 }}
*/}}
{{- define "eks-neuron-lib.monitoringPeers" -}}
{{- $monitoring := dig "networkPolicy" "monitoring" dict (.Values.global | default dict) }}
{{- $namespaces := $monitoring.namespaceSelector | default (dict "matchLabels" (dict "kubernetes.io/metadata.name" "monitoring")) }}
- namespaceSelector:
    {{- toYaml $namespaces | nindent 4 }}
  podSelector:
    {{- toYaml ($monitoring.podSelector | default dict) | nindent 4 }}
{{- end }}

{{/*
A NetworkPolicy that admits the chart's pods' `port`, or each of `ports` (container ports' names),
from the monitoring stack only, when the chart's NetworkPolicies are on.
  {{ include "eks-neuron-lib.monitoringOnlyNetworkPolicy" (dict "context" . "port" "metrics") }}
*/}}
{{- define "eks-neuron-lib.monitoringOnlyNetworkPolicy" -}}
{{- if include "eks-neuron-lib.networkPolicyEnabled" .context }}
{{- $ports := "" }}
{{- range .ports | default (list .port) }}
{{- $ports = printf "%s\n    - port: %s\n      protocol: TCP" $ports (toString .) }}
{{- end }}
{{- $ingress := printf "- from:\n    %s\n  ports:%s" (include "eks-neuron-lib.monitoringPeers" .context | nindent 4 | trim) $ports }}
{{ include "eks-neuron-lib.networkPolicy" (dict "context" .context "policyTypes" (list "Ingress") "ingress" $ingress) }}
{{- end }}
{{- end }}

{{/*
A NetworkPolicy over the chart's pods (its selector labels, or `podLabels`), in the chart's namespace.
`ingress` and `egress` are the rule lists as YAML; a direction named in `policyTypes` with no rules
denies all of it. `suffix` names a second policy of the same chart.
  {{ include "eks-neuron-lib.networkPolicy" (dict "context" . "policyTypes" (list "Ingress") "ingress" (include "my-chart.ingressRules" .)) }}
*/}}
{{- define "eks-neuron-lib.networkPolicy" -}}
{{- $context := .context }}
{{- $name := include "eks-neuron-lib.fullname" $context }}
{{- with .suffix }}{{ $name = printf "%s-%s" ($name | trunc (int (sub 62 (len .))) | trimSuffix "-") . }}{{ end }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name | quote }}
  namespace: {{ include "eks-neuron-lib.namespace" $context | quote }}
  labels:
    {{- include "eks-neuron-lib.labels" $context | nindent 4 }}
spec:
  podSelector:
    {{- if .podLabels }}
    matchLabels:
      {{- .podLabels | trim | nindent 6 }}
    {{- else if .allPods }}
    {}
    {{- else }}
    matchLabels:
      {{- include "eks-neuron-lib.selectorLabels" $context | nindent 6 }}
    {{- end }}
  policyTypes:
    {{- toYaml .policyTypes | nindent 4 }}
  {{- if has "Ingress" .policyTypes }}
  {{- with .ingress | default "" | trim }}
  ingress:
    {{- . | nindent 4 }}
  {{- else }}
  ingress: []
  {{- end }}
  {{- end }}
  {{- if has "Egress" .policyTypes }}
  {{- with .egress | default "" | trim }}
  egress:
    {{- . | nindent 4 }}
  {{- else }}
  egress: []
  {{- end }}
  {{- end }}
{{- end }}

{{/*
Fails unless `cidr` is an IPv4 CIDR with no address bits set past its prefix (the API server warns
about "10.0.0.1/16", which could mean either of two things). `key` names the value in the message.
  {{ include "eks-neuron-lib.checkCIDR" (dict "cidr" . "key" "sd21-serving.networkPolicy.ingressCIDRs") }}
*/}}
{{- define "eks-neuron-lib.checkCIDR" -}}
{{- $parts := regexFind "^([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})/([0-9]{1,2})$" .cidr }}
{{- if not $parts }}
{{- fail (printf "%s: %q is not an IPv4 CIDR block (a.b.c.d/prefix)" .key .cidr) }}
{{- end }}
{{- $numbers := regexSplit "[./]" .cidr -1 }}
{{- $address := 0 }}
{{- range $index, $octet := slice $numbers 0 4 }}
{{- if gt (atoi $octet) 255 }}{{ fail (printf "%s: %q has an octet above 255" $.key $.cidr) }}{{ end }}
{{- $address = add (mul $address 256) (atoi $octet) }}
{{- end }}
{{- $prefix := atoi (index $numbers 4) }}
{{- if gt $prefix 32 }}{{ fail (printf "%s: %q has a prefix above 32" .key .cidr) }}{{ end }}
{{- $block := 1 }}
{{- range until (int (sub 32 $prefix)) }}{{ $block = mul $block 2 }}{{ end }}
{{- if ne (mod $address $block) 0 }}
{{- $base := sub $address (mod $address $block) }}
{{- fail (printf "%s: %q has address bits set past its /%d prefix; write %d.%d.%d.%d/%d (the block) or %s/32 (the one address)" .key .cidr $prefix (div $base 16777216) (mod (div $base 65536) 256) (mod (div $base 256) 256) (mod $base 256) $prefix (index (splitList "/" .cidr) 0)) }}
{{- end }}
{{- end }}
