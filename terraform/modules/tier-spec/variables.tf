variable "tiers" {
  description = <<-EOT
    Cloud tiers to run, one Ray Serve cluster (one KubeRay RayService) each.
    name: 1-40 lowercase letters, digits or '-', starting with a letter; names the RayService,
      the Serve application and the Consul service ID (cloud-<name>).
    kind: private or public. region, zone: where the tier runs, as the router sees it.
    model: the model name the tier serves (Consul tag model:<model>).
    precision: bf16, fp16 or fp32 (the cloud tiers run the full model).
    image: container image holding Ray and hybrid-inference[cloud].
    gpu_type: the GPU node label value (see gpu_node_label); may be empty only when gpu_count is 0.
    gpu_count: GPUs per Serve replica; every replica gets a worker pod of its own.
    cpus_per_replica, memory_per_replica: the rest of that worker pod (a Kubernetes quantity).
    min_replicas, max_replicas: Serve autoscaling bounds; 0 replicas lets the tier scale to zero.
    target_ongoing_requests: requests per replica that Serve autoscaling aims for.
    max_ongoing_requests: requests one replica takes at once; defaults to the batch size (32).
    max_queued_requests: requests Serve queues per caller before it answers with backpressure.
    cost_per_hour: what one replica costs an hour, in the currency the router's cost figures use.
    env_vars: extra environment for the Serve application; the tier's own HYBRID_* settings win.
  EOT
  type = list(object({
    name                    = string
    kind                    = string
    region                  = string
    zone                    = optional(string, "")
    model                   = string
    precision               = optional(string, "bf16")
    image                   = string
    gpu_type                = optional(string, "")
    gpu_count               = number
    cpus_per_replica        = optional(number, 4)
    memory_per_replica      = optional(string, "32Gi")
    min_replicas            = number
    max_replicas            = number
    target_ongoing_requests = number
    # The batch size of hybrid.constants.MAX_BATCH_SIZE: fewer would starve continuous batching.
    max_ongoing_requests = optional(number, 32)
    max_queued_requests  = number
    cost_per_hour        = number
    env_vars             = optional(map(string), {})
  }))
  default  = []
  nullable = false

  validation {
    condition     = alltrue([for t in var.tiers : can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", t.name))])
    error_message = "Every tier needs a name of 1 to 40 lowercase letters, digits or '-', starting with a letter and not ending with '-' (it becomes a Kubernetes name). Change the name of: ${join(", ", [for i, t in var.tiers : "tiers[${i}] (${try("\"${t.name}\"", "null")})" if !can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", t.name))])}."
  }

  validation {
    condition     = length(distinct([for t in var.tiers : t.name])) == length(var.tiers)
    error_message = "Tier names must be unique: rename one of the tiers that share a name (${join(", ", distinct([for t in var.tiers : t.name if length([for u in var.tiers : u if u.name == t.name]) > 1]))})."
  }

  validation {
    condition     = alltrue([for t in var.tiers : contains(["private", "public"], coalesce(t.kind, "-"))])
    error_message = "A tier's kind must be \"private\" or \"public\" (edge nodes use edge_nodes instead). Change kind of: ${join(", ", [for t in var.tiers : "${t.name} (${coalesce(t.kind, "<empty>")})" if !contains(["private", "public"], coalesce(t.kind, "-"))])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : can(regex("^[^\\s]+$", t.region)) && can(regex("^[^\\s]*$", t.zone))])
    error_message = "Every tier needs a region without spaces (and a zone without spaces, or none): set region of: ${join(", ", [for t in var.tiers : t.name if !(can(regex("^[^\\s]+$", t.region)) && can(regex("^[^\\s]*$", t.zone)))])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : can(regex("^[^\\s]+$", t.model))])
    error_message = "Every tier needs a model name without spaces (it becomes the Consul tag model:<name>): set model of: ${join(", ", [for t in var.tiers : t.name if !can(regex("^[^\\s]+$", t.model))])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : contains(["bf16", "fp16", "fp32"], coalesce(t.precision, "-"))])
    error_message = "A cloud tier runs the full model: set precision to bf16, fp16 or fp32 for: ${join(", ", [for t in var.tiers : t.name if !contains(["bf16", "fp16", "fp32"], coalesce(t.precision, "-"))])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : can(regex("^[^\\s]+$", t.image))])
    error_message = "Every tier needs a container image (Ray plus hybrid-inference[cloud]): set image of: ${join(", ", [for t in var.tiers : t.name if !can(regex("^[^\\s]+$", t.image))])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.gpu_count >= 0 && t.gpu_count == floor(t.gpu_count), false)])
    error_message = "gpu_count is GPUs per replica and must be a whole number, 0 or more (0 runs the tier on CPUs): change gpu_count of: ${join(", ", [for t in var.tiers : t.name if !try(t.gpu_count >= 0 && t.gpu_count == floor(t.gpu_count), false)])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.gpu_count == 0 || length(trimspace(t.gpu_type)) > 0, false)])
    error_message = "A tier with GPUs needs gpu_type, the value of the GPU node label its workers are scheduled on (e.g. nvidia-l4): set gpu_type of: ${join(", ", [for t in var.tiers : t.name if !try(t.gpu_count == 0 || length(trimspace(t.gpu_type)) > 0, false)])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.cpus_per_replica > 0, false) && can(regex("^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$", t.memory_per_replica))])
    error_message = "cpus_per_replica must be more than 0 and memory_per_replica a Kubernetes quantity such as 32Gi: change them for: ${join(", ", [for t in var.tiers : t.name if !(try(t.cpus_per_replica > 0, false) && can(regex("^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$", t.memory_per_replica)))])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.min_replicas >= 0 && t.min_replicas == floor(t.min_replicas), false)])
    error_message = "min_replicas must be a whole number, 0 or more (0 lets the tier scale to zero): change min_replicas of: ${join(", ", [for t in var.tiers : t.name if !try(t.min_replicas >= 0 && t.min_replicas == floor(t.min_replicas), false)])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.max_replicas >= 1 && t.max_replicas == floor(t.max_replicas), false)])
    error_message = "max_replicas must be a whole number, 1 or more: change max_replicas of: ${join(", ", [for t in var.tiers : t.name if !try(t.max_replicas >= 1 && t.max_replicas == floor(t.max_replicas), false)])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.min_replicas <= t.max_replicas, false)])
    error_message = "min_replicas may not exceed max_replicas: lower min_replicas or raise max_replicas of: ${join(", ", [for t in var.tiers : "${t.name} (min ${try(tostring(t.min_replicas), "?")} > max ${try(tostring(t.max_replicas), "?")})" if !try(t.min_replicas <= t.max_replicas, false)])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.max_ongoing_requests >= 1 && t.max_ongoing_requests == floor(t.max_ongoing_requests), false)])
    error_message = "max_ongoing_requests must be a whole number, 1 or more: change max_ongoing_requests of: ${join(", ", [for t in var.tiers : t.name if !try(t.max_ongoing_requests >= 1 && t.max_ongoing_requests == floor(t.max_ongoing_requests), false)])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.target_ongoing_requests > 0 && t.target_ongoing_requests <= t.max_ongoing_requests, false)])
    error_message = "target_ongoing_requests must be more than 0 and at most max_ongoing_requests (a replica never holds more): change target_ongoing_requests of: ${join(", ", [for t in var.tiers : t.name if !try(t.target_ongoing_requests > 0 && t.target_ongoing_requests <= t.max_ongoing_requests, false)])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.max_queued_requests >= 1 && t.max_queued_requests == floor(t.max_queued_requests), false)])
    error_message = "max_queued_requests must be a whole number, 1 or more; an unbounded queue would hide overload from the router's spillover: change max_queued_requests of: ${join(", ", [for t in var.tiers : t.name if !try(t.max_queued_requests >= 1 && t.max_queued_requests == floor(t.max_queued_requests), false)])}."
  }

  validation {
    condition     = alltrue([for t in var.tiers : try(t.cost_per_hour >= 0, false)])
    error_message = "cost_per_hour must be 0 or more (what one replica costs an hour): change cost_per_hour of: ${join(", ", [for t in var.tiers : t.name if !try(t.cost_per_hour >= 0, false)])}."
  }
}

variable "edge_nodes" {
  description = <<-EOT
    Regional edge nodes to render cloud-init user data for. name: 1-63 lowercase letters,
    digits or '-'; region: the node's region as the router sees it; artifact_url: http(s) URL of
    the edge artifact built by `hybrid export` (its folder as `hybrid artifacts serve` serves it,
    or a tarball of it); artifact_sha256: the sha256 of its manifest.json in hex (`hybrid artifacts
    hash DIR`), which vouches for every file;
    router: the router's gRPC address as HOST:PORT.
  EOT
  type = list(object({
    name            = string
    region          = string
    artifact_url    = string
    artifact_sha256 = string
    router          = string
  }))
  default  = []
  nullable = false

  validation {
    condition     = alltrue([for n in var.edge_nodes : can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", n.name))])
    error_message = "Every edge node needs a name of 1 to 63 lowercase letters, digits or '-', starting with a letter: change the name of: ${join(", ", [for i, n in var.edge_nodes : "edge_nodes[${i}] (${try("\"${n.name}\"", "null")})" if !can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", n.name))])}."
  }

  validation {
    condition     = length(distinct([for n in var.edge_nodes : n.name])) == length(var.edge_nodes)
    error_message = "Edge node names must be unique: rename the nodes that share a name."
  }

  validation {
    condition     = alltrue([for n in var.edge_nodes : can(regex("^[^\\s]+$", n.region))])
    error_message = "Every edge node needs a region without spaces: set region of: ${join(", ", [for n in var.edge_nodes : n.name if !can(regex("^[^\\s]+$", n.region))])}."
  }

  validation {
    condition     = alltrue([for n in var.edge_nodes : can(regex("^https?://[^\\s]+$", n.artifact_url))])
    error_message = "artifact_url must be an http:// or https:// URL of the edge artifact: change artifact_url of: ${join(", ", [for n in var.edge_nodes : n.name if !can(regex("^https?://[^\\s]+$", n.artifact_url))])}."
  }

  validation {
    condition     = alltrue([for n in var.edge_nodes : can(regex("^[0-9a-f]{64}$", n.artifact_sha256))])
    error_message = "artifact_sha256 must be the sha256 of the artifact's manifest.json as 64 lowercase hex digits (`hybrid artifacts hash DIR` prints it): change artifact_sha256 of: ${join(", ", [for n in var.edge_nodes : n.name if !can(regex("^[0-9a-f]{64}$", n.artifact_sha256))])}."
  }

  validation {
    condition     = alltrue([for n in var.edge_nodes : can(regex("^[^\\s:/]+:[0-9]{1,5}$", n.router))])
    error_message = "router must be the router's gRPC address as HOST:PORT, e.g. router.internal:50051: change router of: ${join(", ", [for n in var.edge_nodes : n.name if !can(regex("^[^\\s:/]+:[0-9]{1,5}$", n.router))])}."
  }
}

variable "edge_tls" {
  description = <<-EOT
    TLS of each edge agent's gRPC server, by edge node name, as PEM text: cert_pem, its key_pem, and
    ca_pem, the CA of the callers' client certificates (the router's), or "" for none. cloud-init
    writes them to /etc/hybrid-edge/tls (the key readable by the agent's user only) and `hybrid-edge
    install` binds the agent to every interface with them. Sensitive: the keys stay out of plans and
    logs, and the rendered user data that carries them is sensitive too.
  EOT
  type = map(object({
    cert_pem = string
    key_pem  = string
    ca_pem   = optional(string, "")
  }))
  default   = {}
  nullable  = false
  sensitive = true

  validation {
    condition = alltrue([
      for t in values(var.edge_tls) : t.cert_pem == "" || (
        strcontains(t.cert_pem, "BEGIN CERTIFICATE") && strcontains(t.key_pem, "PRIVATE KEY") &&
        (t.ca_pem == "" || strcontains(t.ca_pem, "BEGIN CERTIFICATE"))
      )
    ])
    error_message = "edge_tls: cert_pem and ca_pem must be PEM certificates (-----BEGIN CERTIFICATE-----) and key_pem the certificate's PEM private key; check every node's entry."
  }

  validation {
    condition     = var.edge_plaintext || alltrue([for n in var.edge_nodes : nonsensitive(try(var.edge_tls[n.name].cert_pem, "") != "")])
    error_message = "An edge agent without TLS binds loopback only, where no router reaches it: give edge_tls for: ${join(", ", [for n in var.edge_nodes : n.name if !nonsensitive(try(var.edge_tls[n.name].cert_pem, "") != "")])} (or set edge_plaintext = true to serve plain gRPC on every interface)."
  }

  validation {
    condition     = alltrue([for name in nonsensitive(keys(var.edge_tls)) : contains([for n in var.edge_nodes : n.name], name)])
    error_message = "edge_tls has entries for nodes that are not in edge_nodes: ${join(", ", [for name in nonsensitive(keys(var.edge_tls)) : name if !contains([for n in var.edge_nodes : n.name], name)])}. Use the names in edge_nodes."
  }
}

variable "edge_plaintext" {
  description = "Let edge agents without edge_tls serve plain gRPC on every interface (hybrid-edge install --plaintext). Off, such a node is refused here: without TLS the agent binds loopback only, where no router reaches it."
  type        = bool
  default     = false
  nullable    = false
}

variable "artifact_trust_key_pem" {
  description = "Public key (PEM: the .pub that `hybrid artifacts keygen` wrote) that signed the edge artifact; edge nodes refuse an artifact it did not sign (hybrid-edge install --trust), and their agents refuse to load one. Empty: nodes check the sha256 pin only."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.artifact_trust_key_pem == "" || (strcontains(var.artifact_trust_key_pem, "BEGIN PUBLIC KEY") && !strcontains(var.artifact_trust_key_pem, "PRIVATE"))
    error_message = "artifact_trust_key_pem must be a PEM public key (-----BEGIN PUBLIC KEY-----): the .pub file `hybrid artifacts keygen` wrote, never the private key."
  }
}

variable "cloud_tls" {
  description = "Whether the tiers' gRPC endpoints use TLS: every Ray container mounts the Secret <tier>-tls (tls.crt, tls.key, ca.crt; the ray-serve-cluster module makes it from its sensitive tls_* variables) at /etc/hybrid/tls and finds the files through HYBRID_TLS_CERT, HYBRID_TLS_KEY and HYBRID_TLS_CA; Consul's check then speaks TLS."
  type        = bool
  default     = false
  nullable    = false
}

variable "edge_package" {
  description = "The pip requirement that puts hybrid-edge on an edge node, installed into a virtual environment by cloud-init."
  type        = string
  default     = "hybrid-inference[edge,consul]"
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]+$", var.edge_package))
    error_message = "edge_package must be one pip requirement without spaces, such as hybrid-inference[edge,consul]==0.1.0."
  }
}

variable "namespace" {
  description = "Kubernetes namespace of the RayServices."
  type        = string
  default     = "hybrid"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a Kubernetes namespace name: 1 to 63 lowercase letters, digits or '-'."
  }
}

variable "grpc_port" {
  description = "Port of Ray Serve's gRPC proxy; the tier's hybrid.v1.Inference endpoint and its Consul port."
  type        = number
  default     = 9000
  nullable    = false

  validation {
    condition     = var.grpc_port >= 1 && var.grpc_port <= 65535 && var.grpc_port == floor(var.grpc_port)
    error_message = "grpc_port must be a whole number from 1 to 65535."
  }
}

variable "grpc_servicer_functions" {
  description = <<-EOT
    Functions that add gRPC servicers to Ray Serve's gRPC proxy (cloud.defaults.CLOUD_GRPC_SERVICER_FUNCTIONS).
    cloud.grpc_servicers.add_inference_servicer serves hybrid.v1.Inference with Generate's request
    left as bytes, so the replica answers a malformed request with INVALID_ARGUMENT. The health
    servicer is there so Consul's gRPC check (grpc.health.v1) reaches the application through the proxy.
  EOT
  type        = list(string)
  default = [
    "cloud.grpc_servicers.add_inference_servicer",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
  ]
  nullable = false

  validation {
    condition     = length(var.grpc_servicer_functions) > 0 && alltrue([for f in var.grpc_servicer_functions : can(regex("^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)+$", f))])
    error_message = "grpc_servicer_functions must list at least one dotted Python path such as cloud.grpc_servicers.add_inference_servicer."
  }
}

variable "grpc_addresses" {
  description = <<-EOT
    Address the router reaches each tier's gRPC endpoint at, by tier name (for example the load
    balancer of the serve service). A tier left out is registered under its in-cluster DNS name,
    <name>-grpc.<namespace>.svc.cluster.local.
  EOT
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for name in keys(var.grpc_addresses) : contains([for t in var.tiers : t.name], name)])
    error_message = "grpc_addresses has entries for tiers that do not exist: ${join(", ", [for name in keys(var.grpc_addresses) : name if !contains([for t in var.tiers : t.name], name)])}. Use the names in tiers."
  }

  validation {
    condition     = alltrue([for address in values(var.grpc_addresses) : can(regex("^[^\\s:/]+$", address))])
    error_message = "grpc_addresses values are host names or IP addresses without a port (the port is grpc_port)."
  }
}

variable "import_path" {
  description = "Import path of the Ray Serve application builder of the cloud tier."
  type        = string
  default     = "cloud.app:build_app"
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$", var.import_path))
    error_message = "import_path must look like module.path:builder, e.g. cloud.app:build_app."
  }
}

variable "deployment_name" {
  description = "Name of the Serve deployment inside the application that the autoscaling and actor options apply to."
  type        = string
  default     = "InferenceDeployment"
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_-]*$", var.deployment_name))
    error_message = "deployment_name must be the Serve deployment's name: letters, digits, '_' or '-'."
  }
}

variable "ray_version" {
  description = "Ray version in the image; KubeRay uses it to start the cluster. Matches the cloud extra's ray[serve] pin."
  type        = string
  default     = "2.60.0"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.ray_version))
    error_message = "ray_version must be a release number such as 2.60.0."
  }
}

variable "gpu_node_label" {
  description = <<-EOT
    Node label whose value is a tier's gpu_type; GPU workers are scheduled on nodes carrying it.
    nvidia.com/gpu.product is set by NVIDIA GPU feature discovery; GKE sets
    cloud.google.com/gke-accelerator.
  EOT
  type        = string
  default     = "nvidia.com/gpu.product"
  nullable    = false

  validation {
    condition     = can(regex("^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$", var.gpu_node_label))
    error_message = "gpu_node_label must be a Kubernetes label key such as nvidia.com/gpu.product."
  }
}

variable "head_node" {
  description = "CPU and memory of each cluster's Ray head pod. It runs the Serve controller and no replicas."
  type = object({
    cpu    = optional(string, "2")
    memory = optional(string, "8Gi")
  })
  default  = {}
  nullable = false

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?m?$", var.head_node.cpu)) && can(regex("^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$", var.head_node.memory))
    error_message = "head_node.cpu must be a CPU quantity such as 2 or 500m and head_node.memory a memory quantity such as 8Gi."
  }
}

variable "direct_ingress" {
  description = <<-EOT
    Serve's direct ingress: every replica also serves gRPC on a port of its own pod and registers itself
    in discovery there, one entry per replica, which the router prefers to the tier's entry at the proxy.
    enabled: turn it on (RAY_SERVE_ENABLE_DIRECT_INGRESS on every Ray container).
    discovery: where replicas register (consul: the Consul agent CONSUL_HTTP_ADDR names on their node).
    grpc_port: the first port of Serve's range, which a pod's one replica gets.
    draining_period_s: how long Serve holds a stopping replica; the router follows discovery within a poll.
    own_port: with cloud_tls, the port each replica opens itself (HYBRID_REPLICA_PORT), serving mutual TLS
      straight from its engine, and registers in place of Serve's port, which Serve can only serve in
      plaintext; the NetworkPolicy then opens this port and not Serve's. 0 registers Serve's port.
  EOT
  type = object({
    enabled           = optional(bool, true)
    discovery         = optional(string, "consul")
    grpc_port         = optional(number, 40000)
    draining_period_s = optional(number, 2)
    own_port          = optional(number, 41000)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.direct_ingress.draining_period_s >= 0 && var.direct_ingress.grpc_port > 0 && var.direct_ingress.grpc_port < 65536 && var.direct_ingress.own_port >= 0 && var.direct_ingress.own_port < 65536 && var.direct_ingress.own_port != var.direct_ingress.grpc_port
    error_message = "direct_ingress: draining_period_s must be 0 or more, grpc_port a port number (Serve's default range starts at 40000) and own_port 0 or a port number other than grpc_port."
  }
}

variable "service_type" {
  description = "Kubernetes Service type of each tier's gRPC endpoint. ClusterIP keeps it inside the cluster; LoadBalancer opens it to the router outside the cluster (narrow it with load_balancer_source_ranges)."
  type        = string
  default     = "ClusterIP"
  nullable    = false

  validation {
    condition     = contains(["LoadBalancer", "NodePort", "ClusterIP"], var.service_type)
    error_message = "service_type must be LoadBalancer, NodePort or ClusterIP."
  }
}

variable "load_balancer_source_ranges" {
  description = "With service_type LoadBalancer: the CIDR ranges allowed to reach a tier's gRPC endpoint (the router's addresses); empty allows any."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for cidr in var.load_balancer_source_ranges : can(cidrhost(cidr, 0))])
    error_message = "load_balancer_source_ranges must be CIDR ranges such as 203.0.113.0/24."
  }
}

variable "health_check" {
  description = <<-EOT
    Consul's gRPC health check of each tier: how often it runs, how long one probe may take, and
    after how long in the critical state Consul drops the registration (Consul's minimum is 1m).
  EOT
  type = object({
    interval                          = optional(string, "10s")
    timeout                           = optional(string, "5s")
    deregister_critical_service_after = optional(string, "10m")
  })
  default  = {}
  nullable = false

  validation {
    condition = alltrue([
      for d in [var.health_check.interval, var.health_check.timeout, var.health_check.deregister_critical_service_after] :
      can(regex("^[0-9]+(ms|s|m|h)$", d))
    ])
    error_message = "health_check durations are a whole number and a unit, such as 10s, 5s or 10m."
  }
}
