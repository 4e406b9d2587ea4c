output "rayservice_name" {
  description = "Name of the RayService."
  value       = kubernetes_manifest.rayservice.manifest.metadata.name
}

output "namespace" {
  description = "Namespace the RayService runs in."
  value       = local.namespace
}

output "grpc_service_name" {
  description = "Kubernetes Service in front of the tier's gRPC proxies."
  value       = local.grpc_service_name
}

output "grpc_address" {
  description = "Host the router reaches the tier at: the load balancer's IP or host name, else the in-cluster DNS name. Feed it to tier-spec's grpc_addresses."
  value       = local.grpc_address
}

output "grpc_port" {
  description = "Port of the tier's hybrid.v1.Inference endpoint."
  value       = local.grpc_port
}
