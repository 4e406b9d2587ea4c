terraform {
  required_version = ">= 1.9.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = ">= 3.0.0, < 4.0.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.31.0"
    }
    consul = {
      source  = "hashicorp/consul"
      version = ">= 2.20.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.gcp_region
}

data "google_client_config" "current" {}

# Both Kubernetes providers reach the new cluster with the caller's own Google credentials.
provider "kubernetes" {
  host                   = "https://${google_container_cluster.hybrid.endpoint}"
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = base64decode(google_container_cluster.hybrid.master_auth[0].cluster_ca_certificate)
}

provider "helm" {
  kubernetes = {
    host                   = "https://${google_container_cluster.hybrid.endpoint}"
    token                  = data.google_client_config.current.access_token
    cluster_ca_certificate = base64decode(google_container_cluster.hybrid.master_auth[0].cluster_ca_certificate)
  }
}

# The ACL token comes from CONSUL_HTTP_TOKEN, so it never lands in a file or in state.
provider "consul" {
  address    = var.consul_address
  scheme     = var.consul_scheme
  datacenter = var.consul_datacenter
}
