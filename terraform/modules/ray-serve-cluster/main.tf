locals {
  namespace         = var.rayservice_manifest.metadata.namespace
  grpc_service_name = var.rayservice_manifest.spec.serveService.metadata.name
  grpc_port         = var.rayservice_manifest.spec.serveService.spec.ports[0].port
}

resource "kubernetes_namespace_v1" "tier" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = local.namespace
  }
}

resource "helm_release" "kuberay_operator" {
  count = var.install_operator ? 1 : 0

  name             = "kuberay-operator"
  repository       = var.kuberay_chart_repository
  chart            = "kuberay-operator"
  version          = var.kuberay_version
  namespace        = var.operator_namespace
  create_namespace = true
  # The RayService below needs the operator's CRDs and webhook up first.
  wait = true
}

# The RayService carries the whole cluster: the head group and the GPU worker group, whose pods
# the Ray autoscaler adds and removes as Serve autoscaling asks for replicas.
resource "kubernetes_manifest" "rayservice" {
  manifest = var.rayservice_manifest

  wait {
    condition {
      type   = "Ready"
      status = "True"
    }
  }

  timeouts {
    create = var.ready_timeout
    update = var.ready_timeout
    delete = "15m"
  }

  depends_on = [helm_release.kuberay_operator, kubernetes_namespace_v1.tier]
}

# KubeRay creates the gRPC service from spec.serveService once the cluster serves.
data "kubernetes_service_v1" "grpc" {
  metadata {
    name      = local.grpc_service_name
    namespace = local.namespace
  }

  depends_on = [kubernetes_manifest.rayservice]
}

locals {
  load_balancer_ingress = try(data.kubernetes_service_v1.grpc.status[0].load_balancer[0].ingress[0], {})
  # A load balancer's IP or host name when there is one, the in-cluster name otherwise.
  grpc_address = coalesce(
    try(local.load_balancer_ingress.ip, ""),
    try(local.load_balancer_ingress.hostname, ""),
    "${local.grpc_service_name}.${local.namespace}.svc.cluster.local",
  )
}
