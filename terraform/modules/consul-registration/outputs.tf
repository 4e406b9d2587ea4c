output "service_ids" {
  description = "Consul service ID of each registered tier, by tier name."
  value       = { for name, service in consul_service.tier : name => service.service_id }
}
