module "spec" {
  source = "../tier-spec"

  edge_package = var.edge_package
  edge_nodes = [{
    name            = var.name
    region          = var.region
    artifact_url    = var.artifact_url
    artifact_sha256 = var.artifact_sha256
    router          = var.router
  }]
}
