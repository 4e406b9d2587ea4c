variable "kubeconfig_path" {
  description = "kubeconfig of the existing Kubernetes cluster with GPU nodes."
  type        = string
  default     = "~/.kube/config"
  nullable    = false

  validation {
    condition     = length(trimspace(var.kubeconfig_path)) > 0
    error_message = "kubeconfig_path must name a kubeconfig file, e.g. ~/.kube/config."
  }
}

variable "kube_context" {
  description = "kubeconfig context to use; null for the file's current context."
  type        = string
  default     = null

  validation {
    condition     = var.kube_context == null || try(length(trimspace(var.kube_context)) > 0, false)
    error_message = "kube_context must be a context name from the kubeconfig, or null for its current context."
  }
}

variable "consul_address" {
  description = "HOST:PORT of the Consul HTTP API the router watches."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s:/]+:[0-9]{1,5}$", var.consul_address))
    error_message = "consul_address must be HOST:PORT, such as consul.internal:8501."
  }
}

variable "consul_scheme" {
  description = "Scheme of the Consul HTTP API."
  type        = string
  default     = "https"
  nullable    = false

  validation {
    condition     = contains(["http", "https"], var.consul_scheme)
    error_message = "consul_scheme must be http or https."
  }
}

variable "consul_datacenter" {
  description = "Consul datacenter to register in; null for the agent's own."
  type        = string
  default     = null
}

variable "kuberay_chart_repository" {
  description = "Helm repository of the kuberay-operator chart: the one KubeRay's installation guide names, or your mirror."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^(https?|oci)://[^\\s]+$", var.kuberay_chart_repository))
    error_message = "kuberay_chart_repository must be the URL of a Helm repository (https://... or oci://...)."
  }
}

variable "install_operator" {
  description = "Whether to install the KubeRay operator; false when the cluster runs one already."
  type        = bool
  default     = true
  nullable    = false
}

variable "namespace" {
  description = "Kubernetes namespace of the tier."
  type        = string
  default     = "hybrid"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be 1 to 63 lowercase letters, digits or '-'."
  }
}

variable "tier_name" {
  description = "Name of the tier: its RayService, Serve application and Consul ID (cloud-<name>)."
  type        = string
  default     = "private"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", var.tier_name))
    error_message = "tier_name must be 1 to 40 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "region" {
  description = "Region of the private cloud as the router sees it (Consul meta region)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]+$", var.region))
    error_message = "region must be a non-empty name without spaces, such as eu-west."
  }
}

variable "zone" {
  description = "Zone inside the region, or empty."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]*$", var.zone))
    error_message = "zone must not contain spaces."
  }
}

variable "model" {
  description = "Model name the tier serves."
  type        = string
  default     = "smollm2-135m"
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]+$", var.model))
    error_message = "model must be a non-empty name without spaces."
  }
}

variable "image" {
  description = "Container image with Ray and hybrid-inference[cloud], e.g. <your registry>/hybrid-cloud:0.1.0."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]+$", var.image))
    error_message = "image must be a container image reference without spaces."
  }
}

variable "gpu_type" {
  description = "Value of the nvidia.com/gpu.product node label of the GPU nodes to use (NVIDIA GPU feature discovery sets it), e.g. NVIDIA-A100-SXM4-80GB."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]+$", var.gpu_type))
    error_message = "gpu_type must be the GPU nodes' nvidia.com/gpu.product label value, e.g. NVIDIA-L4."
  }
}

variable "gpu_count" {
  description = "GPUs per replica."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.gpu_count >= 0 && var.gpu_count == floor(var.gpu_count)
    error_message = "gpu_count must be a whole number, 0 or more."
  }
}

variable "min_replicas" {
  description = "Fewest Serve replicas (GPU worker pods) the tier keeps."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.min_replicas >= 0 && var.min_replicas == floor(var.min_replicas)
    error_message = "min_replicas must be a whole number, 0 or more."
  }
}

variable "max_replicas" {
  description = "Most Serve replicas the tier scales to; at most the GPU nodes available to it."
  type        = number
  default     = 4
  nullable    = false

  validation {
    condition     = var.max_replicas >= 1 && var.max_replicas == floor(var.max_replicas) && var.max_replicas >= var.min_replicas
    error_message = "max_replicas must be a whole number, 1 or more and at least min_replicas."
  }
}

variable "target_ongoing_requests" {
  description = "Requests per replica that Serve autoscaling aims for."
  type        = number
  default     = 16
  nullable    = false

  validation {
    condition     = var.target_ongoing_requests > 0 && var.target_ongoing_requests <= 32
    error_message = "target_ongoing_requests must be more than 0 and at most 32, the requests one replica takes at once."
  }
}

variable "max_queued_requests" {
  description = "Requests Serve queues before it answers with backpressure and the router spills over."
  type        = number
  default     = 128
  nullable    = false

  validation {
    condition     = var.max_queued_requests >= 1 && var.max_queued_requests == floor(var.max_queued_requests)
    error_message = "max_queued_requests must be a whole number, 1 or more."
  }
}

variable "cost_per_hour" {
  description = "What one replica (one GPU node share) costs an hour; amortised hardware and power for a private cloud."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.cost_per_hour >= 0
    error_message = "cost_per_hour must be 0 or more."
  }
}

variable "router_address" {
  description = "The router's gRPC address, HOST:PORT, that edge nodes register through; needed when edge_nodes is not empty."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.router_address == "" || can(regex("^[^\\s:/]+:[0-9]{1,5}$", var.router_address))
    error_message = "router_address must be HOST:PORT, such as router.internal:50051."
  }
}

variable "edge_nodes" {
  description = "Regional edge nodes near this private cloud to render cloud-init user data for: name and region of each."
  type = list(object({
    name   = string
    region = string
  }))
  default  = []
  nullable = false

  validation {
    condition     = length(var.edge_nodes) == 0 || (var.router_address != "" && var.edge_artifact_url != "" && var.edge_artifact_sha256 != "")
    error_message = "Edge nodes need router_address, edge_artifact_url and edge_artifact_sha256: set all three."
  }
}

variable "edge_artifact_url" {
  description = "http(s) URL of the edge artifact built by `hybrid export` (as `hybrid artifacts serve` serves it, or a tarball); needed when edge_nodes is not empty."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.edge_artifact_url == "" || can(regex("^https?://[^\\s]+$", var.edge_artifact_url))
    error_message = "edge_artifact_url must be an http:// or https:// URL."
  }
}

variable "edge_artifact_sha256" {
  description = "sha256 of the edge artifact's manifest.json (`hybrid artifacts hash DIR`), 64 lowercase hex digits."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.edge_artifact_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.edge_artifact_sha256))
    error_message = "edge_artifact_sha256 must be 64 lowercase hex digits, as `hybrid artifacts hash DIR` prints them."
  }
}

variable "service_type" {
  description = "Kubernetes Service type of the tier's gRPC endpoint: ClusterIP when the router runs in the cluster, LoadBalancer when it runs outside (then narrow it with load_balancer_source_ranges)."
  type        = string
  default     = "ClusterIP"
  nullable    = false

  validation {
    condition     = contains(["LoadBalancer", "NodePort", "ClusterIP"], var.service_type)
    error_message = "service_type must be LoadBalancer, NodePort or ClusterIP."
  }
}

variable "load_balancer_source_ranges" {
  description = "With service_type LoadBalancer: the CIDR ranges (the router's addresses) allowed to reach the tier; empty allows any."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for cidr in var.load_balancer_source_ranges : can(cidrhost(cidr, 0))])
    error_message = "load_balancer_source_ranges must be CIDR ranges such as 203.0.113.0/24."
  }
}

variable "cloud_tls" {
  description = "Whether the tier's gRPC endpoint uses TLS, with tls_cert_pem, tls_key_pem and tls_ca_pem."
  type        = bool
  default     = true
  nullable    = false
}

variable "tls_cert_pem" {
  description = "PEM certificate of the tier's gRPC endpoint (for example from `hybrid certs`); needed with cloud_tls. Sensitive."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    condition     = var.tls_cert_pem == "" || strcontains(var.tls_cert_pem, "BEGIN CERTIFICATE")
    error_message = "tls_cert_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----)."
  }
}

variable "tls_key_pem" {
  description = "PEM private key of tls_cert_pem. Sensitive: pass it with TF_VAR_tls_key_pem, never in a committed file."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    condition     = var.tls_key_pem == "" || strcontains(var.tls_key_pem, "PRIVATE KEY")
    error_message = "tls_key_pem must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)."
  }
}

variable "tls_ca_pem" {
  description = "PEM CA certificate of the callers' client certificates (the router's), for mutual TLS. Sensitive."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    condition     = var.tls_ca_pem == "" || strcontains(var.tls_ca_pem, "BEGIN CERTIFICATE")
    error_message = "tls_ca_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----)."
  }
}

variable "edge_tls" {
  description = "TLS of each edge agent, by edge node name, as PEM text: cert_pem, key_pem and ca_pem (the router's CA, or empty). Sensitive: pass it with TF_VAR_edge_tls, never in a committed file."
  type = map(object({
    cert_pem = string
    key_pem  = string
    ca_pem   = optional(string, "")
  }))
  default   = {}
  nullable  = false
  sensitive = true

  validation {
    condition     = alltrue([for name in nonsensitive(keys(var.edge_tls)) : contains([for node in var.edge_nodes : node.name], name)])
    error_message = "edge_tls has entries for nodes that are not in edge_nodes: use the names in edge_nodes."
  }
}

variable "edge_plaintext" {
  description = "Let edge agents without edge_tls serve plain gRPC on every interface; off, such a node is refused."
  type        = bool
  default     = false
  nullable    = false
}

variable "artifact_trust_key_pem" {
  description = "PEM public key that signed the edge artifact (`hybrid artifacts keygen`'s .pub); edge nodes refuse an artifact it did not sign. Empty: the sha256 pin alone."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.artifact_trust_key_pem == "" || (strcontains(var.artifact_trust_key_pem, "BEGIN PUBLIC KEY") && !strcontains(var.artifact_trust_key_pem, "PRIVATE"))
    error_message = "artifact_trust_key_pem must be a PEM public key (-----BEGIN PUBLIC KEY-----), never the private key."
  }
}
