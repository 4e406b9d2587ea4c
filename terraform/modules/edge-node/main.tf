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
  edge_tls = {
    (var.name) = { cert_pem = var.tls_cert_pem, key_pem = var.tls_key_pem, ca_pem = var.tls_ca_pem }
  }
  edge_plaintext         = var.plaintext
  artifact_trust_key_pem = var.artifact_trust_key_pem
}
