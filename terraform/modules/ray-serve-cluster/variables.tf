variable "rayservice_manifest" {
  description = "One tier's RayService, as the tier-spec module renders it (its rayservice_manifests output, by tier name)."
  type = object({
    apiVersion = string
    kind       = string
    metadata = object({
      name      = string
      namespace = string
      labels    = map(string)
    })
    spec = any
  })
  nullable = false

  validation {
    condition     = var.rayservice_manifest.apiVersion == "ray.io/v1" && var.rayservice_manifest.kind == "RayService"
    error_message = "rayservice_manifest must be a ray.io/v1 RayService: pass module.<tier-spec>.rayservice_manifests[\"<tier name>\"]."
  }

  validation {
    condition     = can(var.rayservice_manifest.spec.serveService.metadata.name) && can(var.rayservice_manifest.spec.serveService.spec.ports[0].port)
    error_message = "rayservice_manifest has no spec.serveService with a port: render it with the tier-spec module, which names the gRPC service."
  }
}

variable "install_operator" {
  description = "Whether to install the KubeRay operator. Install it once per Kubernetes cluster; set false for every further tier in the same cluster."
  type        = bool
  default     = true
  nullable    = false
}

variable "kuberay_chart_repository" {
  description = "Helm repository that serves the kuberay-operator chart: the one KubeRay's installation guide names, or your mirror of it."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^(https?|oci)://[^\\s]+$", var.kuberay_chart_repository))
    error_message = "kuberay_chart_repository must be the URL of a Helm repository (https://... or oci://...)."
  }
}

variable "kuberay_version" {
  description = "Version of the kuberay-operator chart. 1.3 or later: the module waits for the RayService's Ready condition, which 1.3 introduced."
  type        = string
  default     = "1.4.2"
  nullable    = false

  validation {
    condition     = can(regex("^1\\.([3-9]|[1-9][0-9])\\.[0-9]+$", var.kuberay_version))
    error_message = "kuberay_version must be a 1.x release of 1.3.0 or later, such as 1.4.2 (earlier releases lack the RayService Ready condition)."
  }
}

variable "operator_namespace" {
  description = "Namespace the KubeRay operator is installed into."
  type        = string
  default     = "kuberay-system"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.operator_namespace))
    error_message = "operator_namespace must be a Kubernetes namespace name: 1 to 63 lowercase letters, digits or '-'."
  }
}

variable "create_namespace" {
  description = "Whether to create the RayService's namespace. Set false when it exists already, e.g. a second tier in the same namespace."
  type        = bool
  default     = true
  nullable    = false
}

variable "ready_timeout" {
  description = "How long apply waits for the RayService to report Ready: image pulls and model loading on new GPU nodes take minutes."
  type        = string
  default     = "45m"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+(s|m|h)$", var.ready_timeout))
    error_message = "ready_timeout is a whole number and a unit, such as 45m or 1h."
  }
}

variable "tls_cert_pem" {
  description = "PEM certificate (chain) of the tier's gRPC endpoints, for the Secret <tier>-tls that the RayService mounts when tier-spec renders it with cloud_tls. Sensitive."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    condition     = var.tls_cert_pem == "" || strcontains(var.tls_cert_pem, "BEGIN CERTIFICATE")
    error_message = "tls_cert_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----), or empty without cloud_tls."
  }
}

variable "tls_key_pem" {
  description = "PEM private key of tls_cert_pem. Sensitive: it goes into the Secret only, never into the manifest or the plan output."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    condition     = var.tls_key_pem == "" || strcontains(var.tls_key_pem, "PRIVATE KEY")
    error_message = "tls_key_pem must be a PEM private key (-----BEGIN ... PRIVATE KEY-----), or empty without cloud_tls."
  }
}

variable "tls_ca_pem" {
  description = "PEM CA certificate that issued the callers' client certificates (the router's), for mutual TLS. Sensitive."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    condition     = var.tls_ca_pem == "" || strcontains(var.tls_ca_pem, "BEGIN CERTIFICATE")
    error_message = "tls_ca_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----), or empty without cloud_tls."
  }
}

variable "network_policy" {
  description = "Whether to add a NetworkPolicy that lets in only what each hop needs: callers on the gRPC ports, the tier's own pods to each other, the KubeRay operator to the dashboard. Needs a network plugin that enforces NetworkPolicy."
  type        = bool
  default     = true
  nullable    = false
}

variable "grpc_client_cidrs" {
  description = "CIDR ranges allowed to reach the tier's gRPC ports (the router's addresses, or the load balancer's nodes); empty allows any source."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for cidr in var.grpc_client_cidrs : can(cidrhost(cidr, 0))])
    error_message = "grpc_client_cidrs must be CIDR ranges such as 10.0.0.0/8."
  }
}
