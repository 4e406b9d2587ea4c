# A cloud tier is not a Consul agent's local service: its endpoint is a load balancer, so each tier
# goes into the catalog as an external node with its service on it.
resource "consul_node" "tier" {
  for_each = var.services

  name       = each.value.ID
  address    = each.value.Address
  datacenter = var.datacenter

  meta = {
    "external-node"  = "true"
    "external-probe" = "true"
  }
}

resource "consul_service" "tier" {
  for_each = var.services

  service_id = each.value.ID
  name       = each.value.Name
  node       = consul_node.tier[each.key].name
  address    = each.value.Address
  port       = each.value.Port
  tags       = each.value.Tags
  meta       = each.value.Meta
  datacenter = var.datacenter

  # consul_service's checks know HTTP and TCP only, so the payload's gRPC check becomes a TCP
  # check of the same endpoint; an agent registration of the payload keeps the gRPC check.
  check {
    check_id                          = "service:${each.value.ID}"
    name                              = each.value.Check.Name
    tcp                               = each.value.Check.GRPC
    interval                          = each.value.Check.Interval
    timeout                           = each.value.Check.Timeout
    deregister_critical_service_after = each.value.Check.DeregisterCriticalServiceAfter
    status                            = var.initial_check_status
  }
}
