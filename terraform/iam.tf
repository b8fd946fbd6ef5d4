# Roles for pods: each trusts exactly one ServiceAccount, through IAM roles for service accounts (the
# charts' eks.amazonaws.com/role-arn annotation). The serving role is also given to its ServiceAccount by
# an EKS Pod Identity association, as AWS's SD sample on EKS deploys it.

locals {
  # The ServiceAccount each pod role trusts.
  pod_roles = {
    serving  = var.serving_service_account
    recovery = var.recovery_service_account
  }
}

data "aws_iam_policy_document" "pod_trust" {
  for_each = local.pod_roles
  # The serving role is also given to its ServiceAccount by EKS Pod Identity.
  source_policy_documents = each.key == "serving" ? [data.aws_iam_policy_document.pod_identity_trust.json] : []

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:sub"
      values   = ["system:serviceaccount:${each.value.namespace}:${each.value.name}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

# EKS Pod Identity's trust (the association names the ServiceAccount): the serving role's second way
# in, and the KEDA operator's only one (queue.tf).
data "aws_iam_policy_document" "pod_identity_trust" {
  statement {
    sid     = "EksPodIdentity"
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_eks_pod_identity_association" "serving" {
  cluster_name    = module.eks.cluster_name
  namespace       = var.serving_service_account.namespace
  service_account = var.serving_service_account.name
  role_arn        = aws_iam_role.serving.arn
}

resource "aws_iam_role" "serving" {
  name               = "${var.cluster_name}-sd21-serving"
  description        = "Reads compiled models from ${var.model_bucket_name}/${var.model_key_prefix}"
  assume_role_policy = data.aws_iam_policy_document.pod_trust["serving"].json
}

data "aws_iam_policy_document" "serving" {
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.models.arn}/${var.model_key_prefix}*"]
  }
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.models.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.model_key_prefix}*"]
    }
  }
  dynamic "statement" {
    for_each = var.serving_role_can_upload ? [1] : []
    content {
      sid       = "UploadCompiledModels"
      actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
      resources = ["${aws_s3_bucket.models.arn}/${var.model_key_prefix}*"]
    }
  }
  statement {
    sid       = "DecryptModels"
    actions   = var.serving_role_can_upload ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]
    resources = [aws_kms_key.models.arn]
  }
}

resource "aws_iam_role_policy" "serving" {
  name   = "models"
  role   = aws_iam_role.serving.id
  policy = data.aws_iam_policy_document.serving.json
}

resource "aws_iam_role" "recovery" {
  name               = "${var.cluster_name}-npd-recovery"
  description        = "Lets node-problem-detector's recovery container replace Neuron nodes with hardware errors"
  assume_role_policy = data.aws_iam_policy_document.pod_trust["recovery"].json
}

data "aws_iam_policy_document" "recovery" {
  statement {
    sid     = "MarkUnhealthy"
    actions = ["autoscaling:SetInstanceHealth"]
    # Only this cluster's node groups (EKS tags their Auto Scaling groups with the cluster name).
    resources = ["arn:${data.aws_partition.current.partition}:autoscaling:${var.region}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/eks:cluster-name"
      values   = [var.cluster_name]
    }
  }
  statement {
    sid = "Describe"
    # Describe calls take no resource ARN.
    actions   = ["autoscaling:DescribeAutoScalingInstances", "ec2:DescribeInstances"]
    resources = ["*"]
  }
  statement {
    sid       = "PublishHealthMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringLike"
      variable = "cloudwatch:namespace"
      values   = ["NeuronHealthCheck*"]
    }
  }
}

resource "aws_iam_role_policy" "recovery" {
  name   = "node-recovery"
  role   = aws_iam_role.recovery.id
  policy = data.aws_iam_policy_document.recovery.json
}
