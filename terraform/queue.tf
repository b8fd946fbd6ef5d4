# Queued generation: the job queue the sd21-serving workers take jobs from, its dead-letter queue,
# the serving role's access to both and to the output prefix, and KEDA's read of the queue's depth
# (the aws-sqs-queue scaler, through KEDA's own EKS Pod Identity).

locals {
  job_queue_name = "${var.cluster_name}-jobs"
  job_output_arn = "${aws_s3_bucket.models.arn}/${var.job_queue.output_prefix}"
}

resource "aws_sqs_queue" "job_dead_letters" {
  count = var.job_queue.enabled ? 1 : 0

  name                      = "${local.job_queue_name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "jobs" {
  count = var.job_queue.enabled ? 1 : 0

  name                       = local.job_queue_name
  visibility_timeout_seconds = var.job_queue.visibility_timeout_seconds
  message_retention_seconds  = var.job_queue.retention_seconds
  # Long polling by default; the worker asks for it on every receive too.
  receive_wait_time_seconds = 20
  sqs_managed_sse_enabled   = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.job_dead_letters[0].arn
    # The worker dead-letters a job on its max_receives-th failure with the reason; this is the
    # backstop for a job that kills its worker before it can say why.
    maxReceiveCount = var.job_queue.max_receives + 2
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "job_dead_letters" {
  count = var.job_queue.enabled ? 1 : 0

  queue_url = aws_sqs_queue.job_dead_letters[0].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs[0].arn]
  })
}

data "aws_iam_policy_document" "job_worker" {
  count = var.job_queue.enabled ? 1 : 0

  statement {
    sid       = "TakeJobs"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.jobs[0].arn]
  }
  statement {
    sid       = "DeadLetterJobs"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.job_dead_letters[0].arn]
  }
  statement {
    sid       = "WriteImagesReadPrompts"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${local.job_output_arn}*"]
  }
  statement {
    sid       = "EncryptImages"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.models.arn]
  }
}

resource "aws_iam_role_policy" "job_worker" {
  count = var.job_queue.enabled ? 1 : 0

  name   = "jobs"
  role   = aws_iam_role.serving.id
  policy = data.aws_iam_policy_document.job_worker[0].json
}

resource "aws_iam_role" "keda" {
  count = var.job_queue.enabled && var.install_keda ? 1 : 0

  name               = "${var.cluster_name}-keda-operator"
  description        = "KEDA's operator reads the job queue's depth"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_trust.json
}

data "aws_iam_policy_document" "keda" {
  count = var.job_queue.enabled && var.install_keda ? 1 : 0

  statement {
    sid       = "ReadQueueDepth"
    actions   = ["sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.jobs[0].arn]
  }
}

resource "aws_iam_role_policy" "keda" {
  count = var.job_queue.enabled && var.install_keda ? 1 : 0

  name   = "job-queue"
  role   = aws_iam_role.keda[0].id
  policy = data.aws_iam_policy_document.keda[0].json
}

resource "aws_eks_pod_identity_association" "keda" {
  count = var.job_queue.enabled && var.install_keda ? 1 : 0

  cluster_name    = module.eks.cluster_name
  namespace       = local.addons.keda.namespace
  service_account = "keda-operator"
  role_arn        = aws_iam_role.keda[0].arn
}
