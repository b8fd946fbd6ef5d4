# nchart tf apply turns these into values/generated/<environment>.yaml for the charts.

output "cluster_name" {
  description = "EKS cluster name."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = module.eks.cluster_endpoint
}

output "region" {
  description = "AWS region."
  value       = var.region
}

output "model_bucket_name" {
  description = "Bucket of compiled models."
  value       = aws_s3_bucket.models.id
}

output "serving_role_arn" {
  description = "IAM role of the sd21-serving ServiceAccount."
  value       = aws_iam_role.serving.arn
}

output "recovery_role_arn" {
  description = "IAM role of the node-problem-detector ServiceAccount (node recovery)."
  value       = aws_iam_role.recovery.arn
}

output "karpenter_node_role_name" {
  description = "IAM role Karpenter gives Neuron nodes (EC2NodeClass spec.role)."
  value       = module.karpenter.node_iam_role_name
}

output "karpenter_queue_name" {
  description = "SQS queue of EC2 interruption events for the Karpenter controller."
  value       = module.karpenter.queue_name
}

output "karpenter_controller_role_arn" {
  description = "IAM role of the Karpenter controller (EKS Pod Identity)."
  value       = module.karpenter.iam_role_arn
}

output "grafana_url" {
  description = "Amazon Managed Grafana's URL (amazon-managed backend); empty for the in-cluster Grafana, opened by port-forward."
  value       = try("https://${aws_grafana_workspace.this[0].endpoint}", "")
}

output "prometheus_remote_write_url" {
  description = "Amazon Managed Prometheus remote-write URL (amazon-managed backend); empty otherwise."
  value       = try("${aws_prometheus_workspace.this[0].prometheus_endpoint}api/v1/remote_write", "")
}

output "load_balancer_subnet_cidrs" {
  description = "CIDRs of the subnets internal load balancers sit in: the sources the serving NetworkPolicy admits (ALB ip targets)."
  value       = module.vpc.intra_subnets_cidr_blocks
}

output "job_queue_url" {
  description = "SQS URL of the job queue (sd21-serving.queue.url); empty without job_queue.enabled."
  value       = var.job_queue.enabled ? aws_sqs_queue.jobs[0].url : ""
}

output "job_dead_letter_queue_url" {
  description = "SQS URL of the jobs' dead-letter queue (sd21-serving.queue.deadLetterUrl); empty without job_queue.enabled."
  value       = var.job_queue.enabled ? aws_sqs_queue.job_dead_letters[0].url : ""
}

output "job_output_uri" {
  description = "Where the workers write images (sd21-serving.queue.outputUri); empty without job_queue.enabled."
  value       = var.job_queue.enabled ? "s3://${aws_s3_bucket.models.bucket}/${var.job_queue.output_prefix}" : ""
}
