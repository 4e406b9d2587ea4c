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
