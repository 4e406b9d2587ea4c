variable "project_id" {
  description = "Google Cloud project to create the GKE cluster in."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6 to 30 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "gcp_region" {
  description = "Google Cloud region of the cluster, e.g. us-central1."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.gcp_region))
    error_message = "gcp_region must be a Google Cloud region such as us-central1."
  }
}

variable "gcp_zone" {
  description = "Zone of the cluster and its node pools, inside gcp_region; pick one that offers gpu_type."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", var.gcp_zone)) && startswith(var.gcp_zone, "${var.gcp_region}-")
    error_message = "gcp_zone must be a zone of gcp_region, such as us-central1-a for us-central1."
  }
}

variable "cluster_name" {
  description = "Name of the GKE cluster."
  type        = string
  default     = "hybrid-public"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be 1 to 40 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "deletion_protection" {
  description = "Whether GKE refuses to delete the cluster; set false before `terraform destroy`."
  type        = bool
  default     = true
  nullable    = false
}

variable "system_machine_type" {
  description = "Machine type of the node pool for the Ray head and the KubeRay operator."
  type        = string
  default     = "e2-standard-4"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]+-[a-z0-9-]+$", var.system_machine_type))
    error_message = "system_machine_type must be a Compute Engine machine type such as e2-standard-4."
  }
}

variable "gpu_machine_type" {
  description = "Machine type of the GPU node pool; it must take gpu_count GPUs of gpu_type (g2 machines come with L4s)."
  type        = string
  default     = "g2-standard-8"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]+-[a-z0-9-]+$", var.gpu_machine_type))
    error_message = "gpu_machine_type must be a Compute Engine machine type such as g2-standard-8."
  }
}

variable "gpu_type" {
  description = "GKE accelerator type, which GKE also sets as the nodes' cloud.google.com/gke-accelerator label, e.g. nvidia-l4."
  type        = string
  default     = "nvidia-l4"
  nullable    = false

  validation {
    condition     = can(regex("^nvidia-[a-z0-9-]+$", var.gpu_type))
    error_message = "gpu_type must be a GKE accelerator type such as nvidia-l4 or nvidia-tesla-t4."
  }
}

variable "gpu_count" {
  description = "GPUs per replica, which is also GPUs per node: every replica gets a node of its own."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.gpu_count >= 1 && var.gpu_count == floor(var.gpu_count)
    error_message = "gpu_count must be a whole number, 1 or more: this example exists for its GPU node pool."
  }
}

variable "cpus_per_replica" {
  description = "CPUs of each replica's pod; leave room for the node's own daemons."
  type        = number
  default     = 6
  nullable    = false

  validation {
    condition     = var.cpus_per_replica > 0
    error_message = "cpus_per_replica must be more than 0."
  }
}

variable "memory_per_replica" {
  description = "Memory of each replica's pod, a Kubernetes quantity; below the GPU machine's allocatable memory."
  type        = string
  default     = "24Gi"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$", var.memory_per_replica))
    error_message = "memory_per_replica must be a Kubernetes quantity such as 24Gi."
  }
}

variable "min_replicas" {
  description = "Fewest replicas (and GPU nodes); 0 lets the public tier cost nothing while idle."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.min_replicas >= 0 && var.min_replicas == floor(var.min_replicas)
    error_message = "min_replicas must be a whole number, 0 or more."
  }
}

variable "max_replicas" {
  description = "Most replicas (and GPU nodes) the tier scales to."
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
  description = "Requests Serve queues before it answers with backpressure."
  type        = number
  default     = 128
  nullable    = false

  validation {
    condition     = var.max_queued_requests >= 1 && var.max_queued_requests == floor(var.max_queued_requests)
    error_message = "max_queued_requests must be a whole number, 1 or more."
  }
}

variable "cost_per_hour" {
  description = "What one GPU node costs an hour at your price; the router routes BATCH traffic by cost per token."
  type        = number
  nullable    = false

  validation {
    condition     = var.cost_per_hour >= 0
    error_message = "cost_per_hour must be 0 or more."
  }
}

variable "tier_name" {
  description = "Name of the tier: its RayService, Serve application and Consul ID (cloud-<name>)."
  type        = string
  default     = "public"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", var.tier_name))
    error_message = "tier_name must be 1 to 40 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "region" {
  description = "Region of the tier as the router sees it (Consul meta region); null for gcp_region."
  type        = string
  default     = null

  validation {
    condition     = var.region == null || can(regex("^[^\\s]+$", var.region))
    error_message = "region must be a name without spaces, or null for gcp_region."
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
  description = "Container image with Ray and hybrid-inference[cloud], in a registry the cluster can pull from."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]+$", var.image))
    error_message = "image must be a container image reference without spaces."
  }
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
