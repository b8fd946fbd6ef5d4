variable "environment" {
  description = "Environment name; matches values/<environment>.yaml."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.environment))
    error_message = "environment must be lowercase letters, digits and dashes (2-21 characters)."
  }
}

variable "region" {
  description = "AWS region."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "cluster_name" {
  description = "EKS cluster name (global.clusterName in the chart values)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,99}$", var.cluster_name))
    error_message = "cluster_name must start with a letter and hold letters, digits and dashes (at most 100)."
  }
}

variable "cluster_version" {
  description = "Kubernetes version of the EKS control plane."
  type        = string

  validation {
    condition     = can(regex("^1\\.(2[89]|3[0-9])$", var.cluster_version))
    error_message = "cluster_version must be an EKS Kubernetes minor version from 1.28, such as 1.31."
  }
}

variable "cluster_endpoint_public_access" {
  description = "Whether the EKS API endpoint is reachable from the internet."
  type        = bool
  default     = false
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR block of /20 or larger."
  }
}

variable "availability_zone_count" {
  description = "Availability zones the VPC spans (inf2 is not offered in every zone; 3 gives Karpenter room)."
  type        = number
  default     = 3

  validation {
    condition     = var.availability_zone_count >= 2 && var.availability_zone_count <= 4
    error_message = "availability_zone_count must be 2 to 4."
  }
}

variable "core_node_group" {
  description = "The managed node group for system pods (schedulers, monitoring, Karpenter)."
  type = object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    desired_size   = number
  })

  validation {
    condition = (
      length(var.core_node_group.instance_types) > 0 &&
      var.core_node_group.min_size >= 1 &&
      var.core_node_group.min_size <= var.core_node_group.desired_size &&
      var.core_node_group.desired_size <= var.core_node_group.max_size
    )
    error_message = "core_node_group needs instance types and 1 <= min_size <= desired_size <= max_size."
  }
}

variable "model_bucket_name" {
  description = "S3 bucket for compiled models (from sd21-serving.model.s3Uri)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.model_bucket_name)) && !can(regex("\\.\\.", var.model_bucket_name))
    error_message = "model_bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, dots and dashes)."
  }
}

variable "model_key_prefix" {
  description = "Key prefix of the model objects the serving pods may read (from sd21-serving.model.s3Uri)."
  type        = string

  validation {
    condition     = can(regex("^([^/].*/)?$", var.model_key_prefix))
    error_message = "model_key_prefix must be empty or end with / and not start with one."
  }
}

variable "serving_service_account" {
  description = "Namespace and name of the sd21-serving ServiceAccount that assumes the model-reader role."
  type = object({
    namespace = string
    name      = string
  })
}

variable "serving_role_can_upload" {
  description = "Also let the serving role write models under the prefix (the chart's compile Job uses the same ServiceAccount)."
  type        = bool
  default     = false
}

variable "recovery_service_account" {
  description = "Namespace and name of the node-problem-detector ServiceAccount that assumes the node-recovery role."
  type = object({
    namespace = string
    name      = string
  })
}

variable "install_karpenter" {
  description = "Install the Karpenter controller and its CRDs (the serving chart's NodePools and EC2NodeClass)."
  type        = bool
  default     = true
}

variable "install_keda" {
  description = "Install KEDA (the serving chart's ScaledObject, autoscaling.mode=keda)."
  type        = bool
  default     = true
}

variable "install_kube_prometheus_stack" {
  description = "Install kube-prometheus-stack: the Prometheus operator (ServiceMonitor, PrometheusRule), Prometheus, Alertmanager and, with the in-cluster backend, Grafana."
  type        = bool
  default     = true
}

variable "install_aws_load_balancer_controller" {
  description = "Install the AWS Load Balancer Controller (the serving chart's Ingress, class alb) with its IAM role (EKS Pod Identity)."
  type        = bool
  default     = true
}

variable "install_metrics_server" {
  description = "Install metrics-server as an EKS add-on (HPA on CPU, kubectl top)."
  type        = bool
  default     = true
}

variable "monitoring_backend" {
  description = "Where metrics are kept and viewed: in-cluster (Prometheus and Grafana of kube-prometheus-stack) or amazon-managed (Prometheus remote-writes to Amazon Managed Prometheus; Amazon Managed Grafana)."
  type        = string
  default     = "in-cluster"

  validation {
    condition     = contains(["in-cluster", "amazon-managed"], var.monitoring_backend)
    error_message = "monitoring_backend must be in-cluster or amazon-managed."
  }
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}

variable "job_queue" {
  description = "Queued generation (sd21-serving server.mode queue or both): an SQS job queue and its dead-letter queue, images written under output_prefix in the model bucket, the serving role allowed both, and KEDA's operator allowed to read the queue's depth. max_receives is the chart's queue.maxReceives (nchart tf copies it); the queue's own redrive moves a message two receives later, so the worker dead-letters it first, with the reason."
  type = object({
    enabled                    = optional(bool, false)
    max_receives               = optional(number, 3)
    visibility_timeout_seconds = optional(number, 300)
    retention_seconds          = optional(number, 345600)
    output_prefix              = optional(string, "generated/")
  })
  default = {}

  validation {
    condition     = var.job_queue.max_receives >= 1 && var.job_queue.max_receives <= 998
    error_message = "job_queue.max_receives must be 1-998 (SQS redrive allows 1000, and it is set 2 higher)."
  }
  validation {
    condition     = var.job_queue.visibility_timeout_seconds >= 0 && var.job_queue.visibility_timeout_seconds <= 43200
    error_message = "job_queue.visibility_timeout_seconds must be 0-43200 (SQS's limit, 12 hours)."
  }
  validation {
    condition     = var.job_queue.retention_seconds >= 60 && var.job_queue.retention_seconds <= 1209600
    error_message = "job_queue.retention_seconds must be 60-1209600 (SQS's limits, 1 minute to 14 days)."
  }
  validation {
    condition     = can(regex("^([A-Za-z0-9!_.*'()-]+/)+$", var.job_queue.output_prefix))
    error_message = "job_queue.output_prefix must be a key prefix ending in /, such as generated/."
  }
}
