output "cluster_name" {
  description = "Name of the GKE cluster, for `gcloud container clusters get-credentials`."
  value       = google_container_cluster.hybrid.name
}

output "grpc_endpoint" {
  description = "HOST:PORT of the public tier's hybrid.v1.Inference endpoint (its load balancer)."
  value       = "${module.ray_serve_cluster.grpc_address}:${module.ray_serve_cluster.grpc_port}"
}

output "consul_service_ids" {
  description = "Consul service IDs the tier is registered under."
  value       = module.consul_registration.service_ids
}

output "serve_config_yaml" {
  description = "The Serve config the RayService runs, as YAML."
  value       = module.tier_spec.serve_config_yaml[var.tier_name]
}
