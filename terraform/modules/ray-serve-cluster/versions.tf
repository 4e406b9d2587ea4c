terraform {
  required_version = ">= 1.9.0"

  required_providers {
    # helm 3 configures its Kubernetes connection as an attribute, not a block.
    helm = {
      source  = "hashicorp/helm"
      version = ">= 3.0.0, < 4.0.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.31.0"
    }
  }
}
