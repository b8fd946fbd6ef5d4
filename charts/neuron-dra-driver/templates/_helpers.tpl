{{/* The DeviceClass of one instance type: the driver's devices on nodes of that type. */}}
{{- define "neuron-dra-driver.instanceDeviceClassName" -}}
{{- printf "%s.neuron.eks-neuron.io" (replace "." "-" .) }}
{{- end }}
