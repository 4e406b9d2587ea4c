variable "services" {
  description = "Consul payloads to register, by tier name: the tier-spec module's consul_services output."
  type = map(object({
    ID      = string
    Name    = string
    Address = string
    Port    = number
    Tags    = list(string)
    Meta    = map(string)
    Check = object({
      Name                           = string
      GRPC                           = string
      GRPCUseTLS                     = bool
      Interval                       = string
      Timeout                        = string
      DeregisterCriticalServiceAfter = string
    })
  }))
  nullable = false

  validation {
    condition     = alltrue([for s in values(var.services) : s.Name == "hybrid-inference"])
    error_message = "Every service must be named hybrid-inference, the one name the router watches: pass the tier-spec module's consul_services unchanged."
  }

  validation {
    condition = alltrue([
      for s in values(var.services) :
      length(setsubtract(["region", "zone", "capacity", "cost_per_hour", "grpc_port"], keys(s.Meta))) == 0
    ])
    error_message = "Every service's Meta needs region, zone, capacity, cost_per_hour and grpc_port: pass the tier-spec module's consul_services unchanged."
  }
}

variable "datacenter" {
  description = "Consul datacenter to register in; null for the agent's own."
  type        = string
  default     = null
}

variable "initial_check_status" {
  description = <<-EOT
    Status each health check starts in. Catalog registrations are probed by consul-esm (the nodes
    carry its external-node and external-probe meta); without consul-esm a check keeps this status,
    so "passing" keeps the tiers routable, while "critical" holds traffic back until the first probe.
  EOT
  type        = string
  default     = "passing"
  nullable    = false

  validation {
    condition     = contains(["passing", "warning", "critical"], var.initial_check_status)
    error_message = "initial_check_status must be passing, warning or critical."
  }
}
