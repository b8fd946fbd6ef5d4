"""Which pod holds which NeuronCore: the kubelet's PodResources allocations as Prometheus metrics."""
