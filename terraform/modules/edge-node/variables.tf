variable "name" {
  description = "Name of the edge node: 1-63 lowercase letters, digits or '-', starting with a letter."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.name))
    error_message = "name must be 1 to 63 lowercase letters, digits or '-', starting with a letter and not ending with '-'."
  }
}

variable "region" {
  description = "Region of the node as the router sees it (the replica's Consul meta region)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]+$", var.region))
    error_message = "region must be a non-empty name without spaces, such as eu-central."
  }
}

variable "artifact_url" {
  description = "http(s) URL of the edge artifact that `hybrid export` built: its folder as `hybrid artifacts serve` serves it (http://HOST:PORT/artifacts/<sha256>), or a tarball of that folder."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^https?://[^\\s]+$", var.artifact_url))
    error_message = "artifact_url must be an http:// or https:// URL of the edge artifact."
  }
}

variable "artifact_sha256" {
  description = "sha256 of the artifact's manifest.json (`hybrid artifacts hash DIR` prints it), 64 lowercase hex digits; the manifest holds the sha256 of every other file, and the installer refuses an artifact that does not match."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.artifact_sha256))
    error_message = "artifact_sha256 must be 64 lowercase hex digits: the sha256 of the artifact's manifest.json, as `hybrid artifacts hash DIR` prints it."
  }
}

variable "router" {
  description = "The router's gRPC address, HOST:PORT."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s:/]+:[0-9]{1,5}$", var.router))
    error_message = "router must be HOST:PORT, such as router.internal:50051."
  }
}

variable "edge_package" {
  description = "The pip requirement that puts hybrid-edge on the node; the consul extra lets the agent register in the node's Consul agent (its default discovery)."
  type        = string
  default     = "hybrid-inference[edge,consul]"
  nullable    = false

  validation {
    condition     = can(regex("^[^\\s]+$", var.edge_package))
    error_message = "edge_package must be one pip requirement without spaces, such as hybrid-inference[edge,consul]==0.1.0."
  }
}

variable "tls_cert_pem" {
  description = "PEM certificate of the node's agent (its gRPC server). With it the agent binds every interface; without it, only plaintext (which must be asked for) reaches beyond loopback. Sensitive."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    condition     = var.tls_cert_pem == "" || strcontains(var.tls_cert_pem, "BEGIN CERTIFICATE")
    error_message = "tls_cert_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----), or empty."
  }
}

variable "tls_key_pem" {
  description = "PEM private key of tls_cert_pem; written to the node readable by the agent's user only. Sensitive."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    condition     = var.tls_key_pem == "" || strcontains(var.tls_key_pem, "PRIVATE KEY")
    error_message = "tls_key_pem must be a PEM private key (-----BEGIN ... PRIVATE KEY-----), or empty."
  }
}

variable "tls_ca_pem" {
  description = "PEM CA certificate of the callers' client certificates (the router's), for mutual TLS; empty for none. Sensitive."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    condition     = var.tls_ca_pem == "" || strcontains(var.tls_ca_pem, "BEGIN CERTIFICATE")
    error_message = "tls_ca_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----), or empty."
  }
}

variable "plaintext" {
  description = "Without TLS files, let the agent serve plain gRPC on every interface (hybrid-edge install --plaintext); off, a node without TLS is refused."
  type        = bool
  default     = false
  nullable    = false

  validation {
    condition     = var.plaintext || nonsensitive(var.tls_cert_pem != "" && var.tls_key_pem != "")
    error_message = "Without TLS the agent binds loopback only, where no router reaches it: give tls_cert_pem and tls_key_pem, or set plaintext = true to serve plain gRPC on every interface."
  }
}

variable "artifact_trust_key_pem" {
  description = "PEM public key that signed the artifact (`hybrid artifacts keygen`'s .pub); the node refuses an artifact it did not sign. Empty: the sha256 pin alone."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.artifact_trust_key_pem == "" || (strcontains(var.artifact_trust_key_pem, "BEGIN PUBLIC KEY") && !strcontains(var.artifact_trust_key_pem, "PRIVATE"))
    error_message = "artifact_trust_key_pem must be a PEM public key (-----BEGIN PUBLIC KEY-----), never the private key."
  }
}
