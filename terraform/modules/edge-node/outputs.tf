output "user_data" {
  description = "cloud-init user data (#cloud-config) that installs hybrid-edge and runs `hybrid-edge install` for this node."
  value       = module.spec.edge_user_data[var.name]
}

output "user_data_base64" {
  description = "The same user data base64-encoded, for VM resources that take it so (e.g. Azure's custom_data)."
  value       = base64encode(module.spec.edge_user_data[var.name])
}
