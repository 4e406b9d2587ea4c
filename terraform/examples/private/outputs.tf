output "grpc_endpoint" {
  description = "HOST:PORT of the private tier's hybrid.v1.Inference endpoint."
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

output "edge_user_data" {
  description = "cloud-init user data of each edge node, by name: give it to the VM's user data (`terraform output -json edge_user_data`). Sensitive: it carries the node's TLS key."
  value       = { for name, node in module.edge_node : name => node.user_data }
  sensitive   = true
}
