resource "google_container_cluster" "hybrid" {
  name     = var.cluster_name
  location = var.gcp_zone

  # Node pools are managed below, so the default pool goes as soon as the cluster exists.
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = var.deletion_protection

  release_channel {
    channel = "REGULAR"
  }
}

resource "google_container_node_pool" "system" {
  name       = "system"
  cluster    = google_container_cluster.hybrid.id
  location   = var.gcp_zone
  node_count = 1

  node_config {
    machine_type = var.system_machine_type
  }
}

# One node per replica: the Ray autoscaler asks for a worker pod per Serve replica and GKE's
# cluster autoscaler adds a GPU node for it. GKE taints these nodes nvidia.com/gpu and labels
# them cloud.google.com/gke-accelerator=<gpu_type>, which the RayService's worker group expects.
resource "google_container_node_pool" "gpu" {
  name               = "gpu"
  cluster            = google_container_cluster.hybrid.id
  location           = var.gcp_zone
  initial_node_count = var.min_replicas

  autoscaling {
    min_node_count = var.min_replicas
    max_node_count = var.max_replicas
  }

  node_config {
    machine_type = var.gpu_machine_type

    guest_accelerator {
      type  = var.gpu_type
      count = var.gpu_count

      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }
  }
}

module "tier_spec" {
  source = "../../modules/tier-spec"

  gpu_node_label = "cloud.google.com/gke-accelerator"
  tiers = [{
    name                    = var.tier_name
    kind                    = "public"
    region                  = coalesce(var.region, var.gcp_region)
    zone                    = var.gcp_zone
    model                   = var.model
    image                   = var.image
    gpu_type                = var.gpu_type
    gpu_count               = var.gpu_count
    cpus_per_replica        = var.cpus_per_replica
    memory_per_replica      = var.memory_per_replica
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
  kuberay_chart_repository = var.kuberay_chart_repository

  depends_on = [google_container_node_pool.system, google_container_node_pool.gpu]
}

module "consul_registration" {
  source = "../../modules/consul-registration"

  services   = module.tier_spec.consul_services
  datacenter = var.consul_datacenter
}
