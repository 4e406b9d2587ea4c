# Each run changes one field of a valid tier to a bad value and expects the module's own
# validation to refuse it, before any plan is made.

variables {
  valid_tier = {
    name                    = "private-eu"
    kind                    = "private"
    region                  = "eu-west"
    model                   = "smollm2-135m"
    image                   = "hybrid-cloud:0.1.0"
    gpu_type                = "nvidia-l4"
    gpu_count               = 1
    min_replicas            = 1
    max_replicas            = 4
    target_ongoing_requests = 16
    max_queued_requests     = 64
    cost_per_hour           = 0.75
  }
  valid_edge_node = {
    name            = "edge-fra-1"
    region          = "eu-central"
    artifact_url    = "https://artifacts.example.com/smollm2-int8.tar.gz"
    artifact_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    router          = "router.internal:50051"
  }
}

run "valid_tier_is_accepted" {
  command = plan

  variables {
    tiers          = [var.valid_tier]
    edge_nodes     = [var.valid_edge_node]
    edge_plaintext = true
  }
}

run "edge_node_without_tls" {
  command = plan

  variables {
    edge_nodes = [var.valid_edge_node]
  }

  expect_failures = [var.edge_tls]
}

run "edge_tls_for_an_unknown_node" {
  command = plan

  variables {
    edge_nodes     = [var.valid_edge_node]
    edge_plaintext = true
    edge_tls = {
      "edge-elsewhere" = {
        cert_pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
        key_pem  = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"
      }
    }
  }

  expect_failures = [var.edge_tls]
}

run "edge_tls_key_is_not_a_key" {
  command = plan

  variables {
    edge_nodes = [var.valid_edge_node]
    edge_tls = {
      "edge-fra-1" = {
        cert_pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
        key_pem  = "/etc/hybrid-edge/tls/agent.key"
      }
    }
  }

  expect_failures = [var.edge_tls]
}

run "private_key_as_trust_key" {
  command = plan

  variables {
    artifact_trust_key_pem = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"
  }

  expect_failures = [var.artifact_trust_key_pem]
}

run "bad_load_balancer_range" {
  command = plan

  variables {
    load_balancer_source_ranges = ["everywhere"]
  }

  expect_failures = [var.load_balancer_source_ranges]
}

run "negative_min_replicas" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { min_replicas = -1 })]
  }

  expect_failures = [var.tiers]
}

run "negative_max_replicas" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { min_replicas = 0, max_replicas = -2 })]
  }

  expect_failures = [var.tiers]
}

run "min_above_max_replicas" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { min_replicas = 5, max_replicas = 2 })]
  }

  expect_failures = [var.tiers]
}

run "unknown_kind" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { kind = "edge" })]
  }

  expect_failures = [var.tiers]
}

run "negative_gpu_count" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { gpu_count = -1 })]
  }

  expect_failures = [var.tiers]
}

run "gpus_without_gpu_type" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { gpu_type = "" })]
  }

  expect_failures = [var.tiers]
}

run "negative_cost" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { cost_per_hour = -0.5 })]
  }

  expect_failures = [var.tiers]
}

run "empty_name" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { name = "" })]
  }

  expect_failures = [var.tiers]
}

run "duplicate_names" {
  command = plan

  variables {
    tiers = [var.valid_tier, var.valid_tier]
  }

  expect_failures = [var.tiers]
}

run "empty_model" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { model = "" })]
  }

  expect_failures = [var.tiers]
}

run "target_above_max_ongoing" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { target_ongoing_requests = 64, max_ongoing_requests = 32 })]
  }

  expect_failures = [var.tiers]
}

run "zero_queue" {
  command = plan

  variables {
    tiers = [merge(var.valid_tier, { max_queued_requests = 0 })]
  }

  expect_failures = [var.tiers]
}

run "address_for_unknown_tier" {
  command = plan

  variables {
    tiers          = [var.valid_tier]
    grpc_addresses = { "private-us" = "10.0.0.1" }
  }

  expect_failures = [var.grpc_addresses]
}

run "bad_artifact_checksum" {
  command = plan

  variables {
    edge_nodes     = [merge(var.valid_edge_node, { artifact_sha256 = "not-a-checksum" })]
    edge_plaintext = true
  }

  expect_failures = [var.edge_nodes]
}

run "router_without_port" {
  command = plan

  variables {
    edge_nodes     = [merge(var.valid_edge_node, { router = "router.internal" })]
    edge_plaintext = true
  }

  expect_failures = [var.edge_nodes]
}

run "bad_grpc_port" {
  command = plan

  variables {
    grpc_port = 70000
  }

  expect_failures = [var.grpc_port]
}

run "own_port_on_serves_port" {
  command = plan

  variables {
    direct_ingress = { own_port = 40000 }
  }

  expect_failures = [var.direct_ingress]
}
