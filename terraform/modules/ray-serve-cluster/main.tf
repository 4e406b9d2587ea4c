locals {
  name              = var.rayservice_manifest.metadata.name
  namespace         = var.rayservice_manifest.metadata.namespace
  grpc_service_name = var.rayservice_manifest.spec.serveService.metadata.name
  grpc_port         = var.rayservice_manifest.spec.serveService.spec.ports[0].port
  cluster           = var.rayservice_manifest.spec.rayClusterConfig
  pod_labels        = { "hybrid/tier" = var.rayservice_manifest.metadata.labels["hybrid/tier"] }

  # The ports callers of the tier reach: the gRPC proxy, and each replica's own gRPC port with direct ingress.
  client_ports = distinct(concat([local.grpc_port], [
    for port in try(local.cluster.workerGroupSpecs[0].template.spec.containers[0].ports, []) :
    port.containerPort if port.name == "replica-grpc"
  ]))
  # The manifest mounts the tier's TLS Secret when tier-spec was given cloud_tls; this module then makes it.
  mounts_tls = contains([
    for env in try(local.cluster.headGroupSpec.template.spec.containers[0].env, []) : env.name
  ], "HYBRID_TLS_CERT")
}

# The tier's TLS files, from sensitive variables: never in the manifest, the plan output or the logs.
resource "kubernetes_secret_v1" "tls" {
  count = local.mounts_tls ? 1 : 0

  metadata {
    name      = "${local.name}-tls"
    namespace = local.namespace
  }

  data = {
    "tls.crt" = var.tls_cert_pem
    "tls.key" = var.tls_key_pem
    "ca.crt"  = var.tls_ca_pem
  }

  lifecycle {
    precondition {
      condition     = var.tls_cert_pem != "" && var.tls_key_pem != "" && var.tls_ca_pem != ""
      error_message = "The RayService mounts the Secret ${local.name}-tls (tier-spec's cloud_tls): give tls_cert_pem, tls_key_pem and tls_ca_pem."
    }
  }

  depends_on = [kubernetes_namespace_v1.tier]
}

# Only what each hop needs: callers reach the gRPC ports, the tier's own pods reach each other (Ray's GCS,
# object transfers and workers use many ports), the KubeRay operator reaches the dashboard. Nothing else,
# so Ray's metrics, the dashboard and the GCS are closed to the rest of the cluster.
resource "kubernetes_network_policy_v1" "tier" {
  count = var.network_policy ? 1 : 0

  metadata {
    name      = "${local.name}-ingress"
    namespace = local.namespace
  }

  spec {
    pod_selector {
      match_labels = local.pod_labels
    }
    policy_types = ["Ingress"]

    ingress {
      dynamic "ports" {
        for_each = local.client_ports
        content {
          port     = ports.value
          protocol = "TCP"
        }
      }
      # No ranges: any source (TLS and API keys guard the endpoint); else the ranges given.
      dynamic "from" {
        for_each = var.grpc_client_cidrs
        content {
          ip_block {
            cidr = from.value
          }
        }
      }
    }

    ingress {
      from {
        pod_selector {
          match_labels = local.pod_labels
        }
      }
    }

    ingress {
      ports {
        port     = 8265
        protocol = "TCP"
      }
      ports {
        port     = 52365
        protocol = "TCP"
      }
      from {
        namespace_selector {
          match_labels = { "kubernetes.io/metadata.name" = var.operator_namespace }
        }
      }
    }
  }

  depends_on = [kubernetes_namespace_v1.tier]
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

  depends_on = [helm_release.kuberay_operator, kubernetes_namespace_v1.tier, kubernetes_secret_v1.tls]
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
