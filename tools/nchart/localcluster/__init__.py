"""A local Kubernetes control plane on 127.0.0.1 for trying the charts for real: its PKI (pki), its
fake EKS nodes (nodes), the processes it starts and stops by PID (processes) and the cluster itself
(cluster). Nothing is imported here: the benchmark imports `processes` where nchart's dependencies
are not installed."""
