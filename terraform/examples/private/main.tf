module "tier_spec" {
  source = "../../modules/tier-spec"

  namespace = var.namespace
  tiers = [{
    name                    = var.tier_name
    kind                    = "private"
    region                  = var.region
    zone                    = var.zone
    model                   = var.model
    image                   = var.image
    gpu_type                = var.gpu_type
    gpu_count               = var.gpu_count
    min_replicas            = var.min_replicas
    max_replicas            = var.max_replicas
    target_ongoing_requests = var.target_ongoing_requests
    max_queued_requests     = var.max_queued_requests
    cost_per_hour           = var.cost_per_hour
  }]
  # Registered once the load balancer has an address; the RayService does not depend on it.
  grpc_addresses              = { (var.tier_name) = module.ray_serve_cluster.grpc_address }
  service_type                = var.service_type
  load_balancer_source_ranges = var.load_balancer_source_ranges
  cloud_tls                   = var.cloud_tls
}

module "ray_serve_cluster" {
  source = "../../modules/ray-serve-cluster"

  rayservice_manifest      = module.tier_spec.rayservice_manifests[var.tier_name]
  tls_cert_pem             = var.tls_cert_pem
  tls_key_pem              = var.tls_key_pem
  tls_ca_pem               = var.tls_ca_pem
  install_operator         = var.install_operator
  kuberay_chart_repository = var.kuberay_chart_repository
}

module "consul_registration" {
  source = "../../modules/consul-registration"

  services   = module.tier_spec.consul_services
  datacenter = var.consul_datacenter
}

module "edge_node" {
  source   = "../../modules/edge-node"
  for_each = { for node in var.edge_nodes : node.name => node }

  name            = each.value.name
  region          = each.value.region
  artifact_url    = var.edge_artifact_url
  artifact_sha256 = var.edge_artifact_sha256
  router          = var.router_address
  # Sensitive values pass through; whether a node has TLS is decided by the module.
  tls_cert_pem           = try(var.edge_tls[each.key].cert_pem, "")
  tls_key_pem            = try(var.edge_tls[each.key].key_pem, "")
  tls_ca_pem             = try(var.edge_tls[each.key].ca_pem, "")
  plaintext              = var.edge_plaintext
  artifact_trust_key_pem = var.artifact_trust_key_pem
}
