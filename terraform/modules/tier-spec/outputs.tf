output "serve_configs" {
  description = "Ray Serve config (serve deploy schema) of each tier, by tier name."
  value       = local.serve_configs
}

output "serve_config_yaml" {
  description = "The same Serve configs as YAML, for `serve deploy` against a Ray cluster run by other means."
  value       = { for name, config in local.serve_configs : name => yamlencode(config) }
}

output "rayservice_manifests" {
  description = "KubeRay RayService manifest of each tier, by tier name, ready for kubernetes_manifest."
  value       = local.rayservice_manifests
}

output "grpc_service_names" {
  description = "Name of the Kubernetes Service KubeRay creates for each tier's gRPC endpoint."
  value       = local.grpc_service_names
}

output "consul_services" {
  description = "Consul agent/service/register payload of each tier (the schema of hybrid.discovery.ReplicaRecord.to_service plus a gRPC Check)."
  value       = local.consul_services
}

output "edge_user_data" {
  description = "cloud-init user data of each edge node, by node name: installs hybrid-edge and runs `hybrid-edge install`. Sensitive: it carries the node's TLS key."
  value       = local.edge_user_data
  sensitive   = true
}
