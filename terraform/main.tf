locals {
  tags = merge(var.tags, {
    "eks-neuron/environment" = var.environment
    "eks-neuron/cluster"     = var.cluster_name
    "managed-by"             = "terraform"
  })
  azs = slice(data.aws_availability_zones.available.names, 0, var.availability_zone_count)
}

data "aws_availability_zones" "available" {
  state = "available"
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

module "vpc" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact version; commit hashes apply to git sources.
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.21.0"

  name = var.cluster_name
  cidr = var.vpc_cidr
  azs  = local.azs
  # /20 private subnets leave room for many pods per Neuron node (VPC CNI: one IP per pod).
  private_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 48 + i)]
  # Internal load balancers get subnets of their own (no route out: an ALB needs none), so that the
  # serving NetworkPolicy can admit the ALB's addresses without admitting every pod of the VPC.
  intra_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 52 + i)]

  enable_nat_gateway     = true
  single_nat_gateway     = var.environment != "prod"
  one_nat_gateway_per_az = var.environment == "prod"

  enable_flow_log                      = true
  create_flow_log_cloudwatch_iam_role  = true
  create_flow_log_cloudwatch_log_group = true

  public_subnet_tags = {
    "kubernetes.io/role/elb" = 1
  }
  # The AWS Load Balancer Controller places internal load balancers in the subnets tagged so.
  intra_subnet_tags = {
    "kubernetes.io/role/internal-elb" = 1
  }
  private_subnet_tags = {
    # Karpenter's EC2NodeClass finds subnets by this tag.
    "karpenter.sh/discovery" = var.cluster_name
  }
}

module "eks" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact version; commit hashes apply to git sources.
  source  = "terraform-aws-modules/eks/aws"
  version = "20.37.2"

  cluster_name                             = var.cluster_name
  cluster_version                          = var.cluster_version
  cluster_endpoint_public_access           = var.cluster_endpoint_public_access
  enable_cluster_creator_admin_permissions = true
  enable_irsa                              = true

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # AWS-managed add-ons, at EKS's default version for the cluster version unless addons.yaml pins one.
  cluster_addons = merge(
    {
      coredns    = {}
      kube-proxy = {}
      vpc-cni = {
        before_compute = true
        # The VPC CNI's network policy agent enforces the charts' NetworkPolicies.
        configuration_values = jsonencode({ enableNetworkPolicy = "true" })
      }
      eks-pod-identity-agent = { before_compute = true }
    },
    var.install_metrics_server ? {
      metrics-server = local.addons["metrics-server"].version == "" ? {} : { addon_version = local.addons["metrics-server"].version }
    } : {},
  )

  eks_managed_node_groups = {
    core = {
      instance_types = var.core_node_group.instance_types
      min_size       = var.core_node_group.min_size
      max_size       = var.core_node_group.max_size
      desired_size   = var.core_node_group.desired_size
      labels = {
        "eks-neuron/node-role" = "core"
      }
    }
  }

  # Karpenter's EC2NodeClass finds the node security group by this tag.
  node_security_group_tags = {
    "karpenter.sh/discovery" = var.cluster_name
  }
}

module "karpenter" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact version; commit hashes apply to git sources.
  source  = "terraform-aws-modules/eks/aws//modules/karpenter"
  version = "20.37.2"

  cluster_name          = module.eks.cluster_name
  enable_v1_permissions = true

  enable_pod_identity             = true
  create_pod_identity_association = true
  namespace                       = local.addons.karpenter.namespace
  service_account                 = "karpenter"

  node_iam_role_use_name_prefix = false
  node_iam_role_name            = "${var.cluster_name}-karpenter-node"
  node_iam_role_additional_policies = {
    AmazonSSMManagedInstanceCore = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
  }
}
