output "user_data" {
  description = "cloud-init user data (#cloud-config) that installs hybrid-edge and runs `hybrid-edge install` for this node. Sensitive: it carries the node's TLS key."
  value       = module.spec.edge_user_data[var.name]
  sensitive   = true
}

output "user_data_base64" {
  description = "The same user data base64-encoded, for VM resources that take it so (e.g. Azure's custom_data). Sensitive."
  value       = base64encode(module.spec.edge_user_data[var.name])
  sensitive   = true
}
