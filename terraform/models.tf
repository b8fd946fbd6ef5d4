# The bucket the serving pods fetch compiled models from: encrypted with its own key, versioned,
# private, TLS only.

resource "aws_kms_key" "models" {
  description             = "Compiled models of ${var.cluster_name}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.models_key.json
}

data "aws_iam_policy_document" "models_key" {
  # In a key policy "*" is this key, and the account-root statement is AWS's default that hands
  # access control to IAM policies (the serving role's, here).
  #checkov:skip=CKV_AWS_111:Default key policy; see above.
  #checkov:skip=CKV_AWS_356:Default key policy; see above.
  #checkov:skip=CKV_AWS_109:Default key policy; see above.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_alias" "models" {
  name          = "alias/${var.cluster_name}-models"
  target_key_id = aws_kms_key.models.key_id
}

resource "aws_s3_bucket" "models" {
  #checkov:skip=CKV_AWS_144:Models are rebuilt by the compile Job; cross-region replication is not worth its cost here.
  #checkov:skip=CKV_AWS_18:Reads are audited through CloudTrail data events, not S3 server access logs.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket event notifications.
  bucket        = var.model_bucket_name
  force_destroy = var.environment != "prod"
}

resource "aws_s3_bucket_ownership_controls" "models" {
  bucket = aws_s3_bucket.models.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "models" {
  bucket                  = aws_s3_bucket.models.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "models" {
  bucket = aws_s3_bucket.models.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "models" {
  bucket = aws_s3_bucket.models.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.models.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "models" {
  bucket = aws_s3_bucket.models.id
  rule {
    id     = "expire-replaced-models"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "models_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.models.arn,
      "${aws_s3_bucket.models.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "models" {
  bucket = aws_s3_bucket.models.id
  policy = data.aws_iam_policy_document.models_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.models]
}
