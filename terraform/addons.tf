# The platform the charts rely on, installed on the cluster: Karpenter (controller and CRDs), KEDA,
# kube-prometheus-stack (Prometheus operator, Prometheus, Alertmanager, Grafana) or Amazon Managed
# Prometheus/Grafana, the AWS Load Balancer Controller, metrics-server. Versions come from addons.yaml,
# the one place they are written; each add-on has its install_* switch.
#
# helm_release needs the cluster's API endpoint: run terraform where it is reachable (public access,
# or from inside the VPC).

locals {
  addons = yamldecode(file("${path.module}/addons.yaml"))

  # Prometheus and Grafana: in the cluster (kube-prometheus-stack), or Amazon Managed Prometheus and
  # Grafana (kube-prometheus-stack still runs the operator and a Prometheus that evaluates the rules
  # and remote-writes to the workspace; Grafana is the managed one).
  amazon_managed_monitoring = var.monitoring_backend == "amazon-managed"
  prometheus_service_account = {
    namespace = local.addons["kube-prometheus-stack"].namespace
    name      = "kube-prometheus-stack-prometheus"
  }
  load_balancer_controller_service_account = {
    namespace = local.addons["aws-load-balancer-controller"].namespace
    name      = "aws-load-balancer-controller"
  }
}

resource "helm_release" "karpenter_crd" {
  count = var.install_karpenter ? 1 : 0

  name       = "karpenter-crd"
  repository = local.addons.karpenter.repository
  chart      = "karpenter-crd"
  version    = local.addons.karpenter.version
  namespace  = local.addons.karpenter.namespace
}

resource "helm_release" "karpenter" {
  count = var.install_karpenter ? 1 : 0

  name       = "karpenter"
  repository = local.addons.karpenter.repository
  chart      = local.addons.karpenter.chart
  version    = local.addons.karpenter.version
  namespace  = local.addons.karpenter.namespace
  # The CRDs come from karpenter-crd, which (unlike a chart's crds/ folder) helm upgrades.
  skip_crds = true
  wait      = true

  values = [yamlencode({
    serviceAccount = { name = module.karpenter.service_account }
    settings = {
      clusterName       = module.eks.cluster_name
      clusterEndpoint   = module.eks.cluster_endpoint
      interruptionQueue = module.karpenter.queue_name
    }
    # On the core node group, never on a node Karpenter itself manages.
    nodeSelector = { "eks-neuron/node-role" = "core" }
  })]

  depends_on = [helm_release.karpenter_crd, module.karpenter]
}

resource "helm_release" "keda" {
  count = var.install_keda ? 1 : 0

  name             = "keda"
  repository       = local.addons.keda.repository
  chart            = local.addons.keda.chart
  version          = local.addons.keda.version
  namespace        = local.addons.keda.namespace
  create_namespace = true
  wait             = true

  values = [yamlencode({
    nodeSelector = { "eks-neuron/node-role" = "core" }
  })]

  depends_on = [module.eks]
}

resource "helm_release" "kube_prometheus_stack" {
  count = var.install_kube_prometheus_stack ? 1 : 0

  # The name is the label its Prometheus selects ServiceMonitors and PrometheusRules by
  # (release=<name>): the charts' global.monitoring.labels default.
  name             = "kube-prometheus-stack"
  repository       = local.addons["kube-prometheus-stack"].repository
  chart            = local.addons["kube-prometheus-stack"].chart
  version          = local.addons["kube-prometheus-stack"].version
  namespace        = local.addons["kube-prometheus-stack"].namespace
  create_namespace = true
  wait             = true
  timeout          = 900

  values = [yamlencode({
    prometheus = {
      serviceAccount = { name = local.prometheus_service_account.name }
      prometheusSpec = merge(
        {
          retention    = "15d"
          nodeSelector = { "eks-neuron/node-role" = "core" }
        },
        local.amazon_managed_monitoring ? {
          remoteWrite = [{
            url   = "${aws_prometheus_workspace.this[0].prometheus_endpoint}api/v1/remote_write"
            sigv4 = { region = var.region }
          }]
        } : {},
      )
    }
    # Grafana's chart generates the admin password into its Secret (kept across upgrades), so it is
    # never in the Terraform state.
    grafana = {
      enabled = !local.amazon_managed_monitoring
      sidecar = {
        dashboards = {
          enabled = true
          # What the grafana-dashboards chart labels and annotates its ConfigMaps with.
          label            = "grafana_dashboard"
          labelValue       = "1"
          searchNamespace  = "ALL"
          folderAnnotation = "grafana_folder"
          provider         = { foldersFromFilesStructure = true }
        }
      }
    }
  })]

  depends_on = [module.eks]
}

module "load_balancer_controller_pod_identity" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact version; commit hashes apply to git sources.
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "1.12.1"
  create  = var.install_aws_load_balancer_controller

  name                            = "${var.cluster_name}-aws-load-balancer-controller"
  attach_aws_lb_controller_policy = true
  associations = {
    controller = {
      cluster_name    = module.eks.cluster_name
      namespace       = local.load_balancer_controller_service_account.namespace
      service_account = local.load_balancer_controller_service_account.name
    }
  }
}

resource "helm_release" "aws_load_balancer_controller" {
  count = var.install_aws_load_balancer_controller ? 1 : 0

  name       = "aws-load-balancer-controller"
  repository = local.addons["aws-load-balancer-controller"].repository
  chart      = local.addons["aws-load-balancer-controller"].chart
  version    = local.addons["aws-load-balancer-controller"].version
  namespace  = local.load_balancer_controller_service_account.namespace
  wait       = true

  values = [yamlencode({
    clusterName    = module.eks.cluster_name
    region         = var.region
    vpcId          = module.vpc.vpc_id
    serviceAccount = { name = local.load_balancer_controller_service_account.name }
    nodeSelector   = { "eks-neuron/node-role" = "core" }
  })]

  depends_on = [module.load_balancer_controller_pod_identity]
}

# Amazon Managed Prometheus and Grafana (monitoring_backend = "amazon-managed").

resource "aws_prometheus_workspace" "this" {
  count = local.amazon_managed_monitoring ? 1 : 0

  alias = var.cluster_name
  logging_configuration {
    log_group_arn = "${aws_cloudwatch_log_group.prometheus[0].arn}:*"
  }
}

resource "aws_cloudwatch_log_group" "prometheus" {
  #checkov:skip=CKV_AWS_158:Workspace logs hold rule and alert errors only; the default encryption is enough.
  count = local.amazon_managed_monitoring ? 1 : 0

  name              = "/aws/prometheus/${var.cluster_name}"
  retention_in_days = 365
}

module "prometheus_pod_identity" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact version; commit hashes apply to git sources.
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "1.12.1"
  create  = local.amazon_managed_monitoring

  name                                             = "${var.cluster_name}-prometheus-remote-write"
  attach_amazon_managed_service_prometheus_policy  = true
  amazon_managed_service_prometheus_workspace_arns = aws_prometheus_workspace.this[*].arn
  associations = {
    prometheus = {
      cluster_name    = module.eks.cluster_name
      namespace       = local.prometheus_service_account.namespace
      service_account = local.prometheus_service_account.name
    }
  }
}

data "aws_iam_policy_document" "grafana_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["grafana.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "grafana" {
  count = local.amazon_managed_monitoring ? 1 : 0

  name               = "${var.cluster_name}-grafana"
  assume_role_policy = data.aws_iam_policy_document.grafana_trust.json
}

data "aws_iam_policy_document" "grafana_queries" {
  #checkov:skip=CKV_AWS_356:aps:ListWorkspaces takes no resource ARN; everything else is scoped to the workspace.
  statement {
    sid       = "QueryPrometheus"
    actions   = ["aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels", "aps:GetMetricMetadata", "aps:DescribeWorkspace"]
    resources = aws_prometheus_workspace.this[*].arn
  }
  statement {
    sid       = "ListWorkspaces"
    actions   = ["aps:ListWorkspaces"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "grafana" {
  count = local.amazon_managed_monitoring ? 1 : 0

  name   = "query-prometheus"
  role   = aws_iam_role.grafana[0].id
  policy = data.aws_iam_policy_document.grafana_queries.json
}

resource "aws_grafana_workspace" "this" {
  count = local.amazon_managed_monitoring ? 1 : 0

  name                     = var.cluster_name
  account_access_type      = "CURRENT_ACCOUNT"
  authentication_providers = ["AWS_SSO"]
  permission_type          = "CUSTOMER_MANAGED"
  role_arn                 = aws_iam_role.grafana[0].arn
  data_sources             = ["PROMETHEUS"]
}
