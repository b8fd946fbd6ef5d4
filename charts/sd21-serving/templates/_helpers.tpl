{{/* The extended resource name and count one replica requests; both follow neuron.coresPerReplica. */}}
{{- define "sd21-serving.neuronResource" -}}
{{- $cores := int .coresPerReplica }}
{{- if eq .resource "neuroncore" }}
{{- dict "aws.amazon.com/neuroncore" $cores | toYaml }}
{{- else }}
{{- dict "aws.amazon.com/neuron" (div $cores (int .coresPerDevice)) | toYaml }}
{{- end }}
{{- end }}

{{/* Container resources (dict: resources, neuron): CPU/memory plus the Neuron resource in requests and limits. */}}
{{- define "sd21-serving.resources" -}}
{{- $neuron := include "sd21-serving.neuronResource" .neuron | fromYaml }}
{{- $requests := merge (deepCopy (default dict .resources.requests)) $neuron }}
{{- $limits := merge (deepCopy (default dict .resources.limits)) $neuron }}
{{- toYaml (dict "requests" $requests "limits" $limits) }}
{{- end }}

{{- define "sd21-serving.taintToleration" -}}
- key: {{ .Values.karpenter.taint.key | quote }}
  operator: Exists
  effect: {{ .Values.karpenter.taint.effect }}
{{- end }}

{{- define "sd21-serving.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* The Pod Security level of the serving namespace: podSecurityLevel, else restricted (privileged with
the hostPath model cache, which even baseline forbids). */}}
{{- define "sd21-serving.podSecurityLevel" -}}
{{- .Values.podSecurityLevel | default (ternary "privileged" "restricted" (eq .Values.model.volume "hostPath")) }}
{{- end }}

{{/*
The server image. Without a tag: the chart's appVersion, suffixed as the release pipeline tags its
targets (-cpu, -cuda; the Neuron image has none, and `auto` runs it).
*/}}
{{- define "sd21-serving.image" -}}
{{- $suffix := get (dict "cpu" "-cpu" "cuda" "-cuda") .Values.server.backend | default "" }}
{{- $tag := .Values.image.tag | default (printf "%s%s" .Chart.AppVersion $suffix) }}
{{- include "eks-neuron-lib.image" (dict "image" (dict "repository" .Values.image.repository "tag" $tag) "context" .) }}
{{- end }}

{{/* A Kubernetes memory quantity (64Gi, 512Mi, 1G, bytes) in MiB, rounded down. */}}
{{- define "sd21-serving.memoryMiB" -}}
{{- $quantity := toString . }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $quantity }}
{{- $unit := trimPrefix $number $quantity }}
{{- $mibPer := dict "" (divf 1 1048576) "Ki" (divf 1 1024) "Mi" 1 "Gi" 1024 "Ti" 1048576 "k" (divf 1000 1048576) "M" (divf 1000000 1048576) "G" (divf 1000000000 1048576) "T" (divf 1000000000000 1048576) }}
{{- if or (not $number) (not (hasKey $mibPer $unit)) }}
{{- fail (printf "sd21-serving: %q is not a memory quantity (e.g. 64Gi)" $quantity) }}
{{- end }}
{{- mulf (float64 $number) (get $mibPer $unit) | floor | int }}
{{- end }}

{{/* A Kubernetes CPU quantity (8, 1.5, 500m) in millicores. */}}
{{- define "sd21-serving.cpuMillicores" -}}
{{- $quantity := toString . }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?m?$" $quantity) }}
{{- fail (printf "sd21-serving: %q is not a CPU quantity (e.g. 8 or 500m)" $quantity) }}
{{- end }}
{{- if hasSuffix "m" $quantity }}{{ trimSuffix "m" $quantity | float64 | floor | int }}{{ else }}{{ mulf (float64 $quantity) 1000 | floor | int }}{{ end }}
{{- end }}

{{/* The compile pool is made when the Job runs and no nodeSelector of the user's places it. */}}
{{- define "sd21-serving.compileNodePool" -}}
{{- if and .Values.compileJob.enabled .Values.karpenter.enabled .Values.karpenter.compileNodePool.enabled (not .Values.compileJob.nodeSelector) }}true{{ end }}
{{- end }}

{{- define "sd21-serving.compileTaint" -}}
key: eks-neuron.io/compile
value: "true"
effect: NoSchedule
{{- end }}

{{/*
The compile Job's command, nodeSelector and tolerations, as YAML. The compiler target is
compileJob.target, else the family of the instance type the release is rendered for; on trn2 the
logical NeuronCore config goes with it. The Job runs on compileJob.nodeSelector, else the compile
NodePool, else an inf2.8xlarge (AWS's smallest SD 2.1 compile host); where that names an instance
type of the catalog (files/node-capacity.json, generated), its CPU and memory requests must fit the
node, or the render stops naming the key.
*/}}
{{- define "sd21-serving.compilePlacement" -}}
{{- $job := .Values.compileJob }}
{{- $instance := .Values.global.neuron.instance | default dict }}
{{- $servedOn := dig "compilerTarget" "" $instance }}
{{- $target := $job.target | default $servedOn }}
{{- if not $target }}
{{- fail "sd21-serving: compileJob.target: say which Neuron instance family the model is compiled for (inf2, trn1, trn1n or trn2), or render with nchart for an instance type" }}
{{- end }}
{{- if and $servedOn (ne $target $servedOn) }}
{{- fail (printf "sd21-serving: compileJob.target is %s, but the release serves on %s (neuronx-cc --target %s): the model would not load there; leave compileJob.target empty" $target $instance.type $servedOn) }}
{{- end }}
{{- $command := list "eks-neuron-serve" "compile" "--model-dir" "/work/source" "--out" "/work/compiled" "--tracer" "neuron" "--target" $target }}
{{- if eq $target "trn2" }}
{{- $command = concat $command (list "--logical-nc-config" (toString (.Values.global.neuron.logicalNeuronCoreConfig | default 2))) }}
{{- end }}
{{- $command = concat $command (list "--attention" $job.attention "--cores" (toString .Values.neuron.coresPerReplica) "--pack" "/work/model.tar.gz") }}
{{- $tolerations := list (include "sd21-serving.taintToleration" . | fromYamlArray | first) }}
{{- $nodeSelector := $job.nodeSelector }}
{{- $where := "compileJob.nodeSelector" }}
{{- if include "sd21-serving.compileNodePool" . }}
{{- $nodeSelector = dict "eks-neuron/node-pool" "compile" }}
{{- $tolerations = append $tolerations (merge (dict "operator" "Equal") (include "sd21-serving.compileTaint" . | fromYaml)) }}
{{- else if not $nodeSelector }}
{{- $nodeSelector = dict "node.kubernetes.io/instance-type" "inf2.8xlarge" }}
{{- $where = "the default compile node (compileJob.nodeSelector empty, karpenter.enabled false)" }}
{{- end }}
{{- $type := get $nodeSelector "node.kubernetes.io/instance-type" }}
{{- $capacity := get (.Files.Get "files/node-capacity.json" | fromJson) ($type | default "") }}
{{- if $capacity }}
{{- $requests := $job.resources.requests | default dict }}
{{- $memory := include "sd21-serving.memoryMiB" ($requests.memory | default "0") | int }}
{{- $cpu := include "sd21-serving.cpuMillicores" ($requests.cpu | default "0") | int }}
{{- if or (gt $memory (int $capacity.podMemoryMiB)) (gt $cpu (int $capacity.podCpuMillicores)) }}
{{- fail (printf "sd21-serving: the compile Job asks for %dm CPU and %dMi memory (compileJob.resources.requests), but %s from %s gives pods %dm and %dMi; AWS compiles SD 2.1 on an inf2.8xlarge or larger: set compileJob.nodeSelector to a bigger type, or lower the requests" $cpu $memory $type $where (int $capacity.podCpuMillicores) (int $capacity.podMemoryMiB)) }}
{{- end }}
{{- end }}
command: {{ toJson $command }}
nodeSelector: {{ toJson $nodeSelector }}
tolerations: {{ toJson (concat $tolerations $job.tolerations) }}
{{- end }}

{{- /* The Secret the server reads its bearer tokens from: auth.existingSecret, or the chart's own. */}}
{{- define "sd21-serving.apiTokensSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-api-tokens" (include "eks-neuron-lib.fullname" .) | trunc 253) -}}
{{- end }}

{{/* The compile Job's pod labels: apart from the server's, so that neither's selectors take the other. */}}
{{- define "sd21-serving.compilePodLabels" -}}
app.kubernetes.io/name: {{ printf "%s-compile" (include "eks-neuron-lib.name" .) | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{- /* The Deployments server.mode asks for, as a YAML list: http, queue, or both. */}}
{{- define "sd21-serving.roles" -}}
{{- $mode := .Values.server.mode }}
{{- if has $mode (list "queue" "both") }}
{{- if not .Values.queue.url }}
{{- fail (printf "sd21-serving.queue.url is required with server.mode=%s: the SQS queue URL the workers take jobs from (terraform output job_queue_url)" $mode) }}
{{- end }}
{{- if not .Values.queue.outputUri }}
{{- fail (printf "sd21-serving.queue.outputUri is required with server.mode=%s: s3://bucket/prefix/ the workers write images to (terraform output job_output_uri)" $mode) }}
{{- end }}
{{- end }}
{{- toYaml (get (dict "http" (list "http") "queue" (list "queue") "both" (list "http" "queue")) $mode) }}
{{- end }}

{{- define "sd21-serving.workerPodLabels" -}}
app.kubernetes.io/name: {{ printf "%s-worker" (include "eks-neuron-lib.name" .) | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{- /* The queue worker's settings (serving/src/serving/settings.py, SD_QUEUE_*). */}}
{{- define "sd21-serving.queueEnv" -}}
{{- with .Values.queue }}
- name: SD_QUEUE_URL
  value: {{ .url | quote }}
- name: SD_QUEUE_DEAD_LETTER_URL
  value: {{ .deadLetterUrl | quote }}
- name: SD_QUEUE_OUTPUT_URI
  value: {{ .outputUri | quote }}
- name: SD_QUEUE_VISIBILITY_TIMEOUT_S
  value: {{ .visibilityTimeoutSeconds | quote }}
- name: SD_QUEUE_MAX_RECEIVES
  value: {{ .maxReceives | quote }}
- name: SD_QUEUE_RETRY_DELAY_S
  value: {{ .retryDelaySeconds | quote }}
- name: SD_QUEUE_MESSAGES
  value: {{ .messagesPerReceive | quote }}
{{- with .region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- end }}

{{- define "sd21-serving.servesHttp" -}}
{{- if has .Values.server.mode (list "http" "both") }}true{{ end }}
{{- end }}

{{- define "sd21-serving.runsWorkers" -}}
{{- if has .Values.server.mode (list "queue" "both") }}true{{ end }}
{{- end }}

{{- /* The load-test Job's pods: a name of their own (no Service or budget selects them); the server's
NetworkPolicy admits them. */}}
{{- define "sd21-serving.loadtestPodLabels" -}}
app.kubernetes.io/name: {{ printf "%s-loadtest" (include "eks-neuron-lib.name" .) | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}
