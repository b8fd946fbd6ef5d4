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
