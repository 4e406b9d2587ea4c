# What the module renders for one GPU tier, one CPU tier and one edge node. Everything is known
# at plan time, so no run needs apply or a provider.

variables {
  tiers = [
    {
      name                    = "private-eu"
      kind                    = "private"
      region                  = "eu-west"
      zone                    = "eu-west-1a"
      model                   = "smollm2-135m"
      image                   = "hybrid-cloud:0.1.0"
      gpu_type                = "nvidia-l4"
      gpu_count               = 1
      min_replicas            = 1
      max_replicas            = 4
      target_ongoing_requests = 16
      max_queued_requests     = 64
      cost_per_hour           = 0.75
      env_vars                = { HF_HOME = "/models", HYBRID_TIER = "overridden" }
    },
    {
      name                    = "public-batch"
      kind                    = "public"
      region                  = "us-east"
      model                   = "smollm2-135m"
      image                   = "hybrid-cloud:0.1.0"
      gpu_count               = 0
      min_replicas            = 0
      max_replicas            = 2
      target_ongoing_requests = 8
      max_queued_requests     = 32
      cost_per_hour           = 0.1
    },
  ]
  edge_nodes = [
    {
      name            = "edge-fra-1"
      region          = "eu-central"
      artifact_url    = "https://artifacts.example.com/smollm2-int8.tar.gz"
      artifact_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
      router          = "router.internal:50051"
    },
  ]
  grpc_addresses = { "private-eu" = "10.20.0.5" }
  # Stand-ins with the PEM markers the module checks for; no real key is ever committed.
  edge_tls = {
    "edge-fra-1" = {
      cert_pem = "-----BEGIN CERTIFICATE-----\nnode certificate\n-----END CERTIFICATE-----\n"
      key_pem  = "-----BEGIN PRIVATE KEY-----\nnode key\n-----END PRIVATE KEY-----\n"
      ca_pem   = "-----BEGIN CERTIFICATE-----\nrouter CA\n-----END CERTIFICATE-----\n"
    }
  }
  artifact_trust_key_pem = "-----BEGIN PUBLIC KEY-----\nsigning key\n-----END PUBLIC KEY-----\n"
}

run "serve_config" {
  command = plan

  assert {
    condition     = length(output.serve_configs["private-eu"].applications) == 1
    error_message = "Each tier's Serve config holds exactly one application."
  }

  assert {
    condition = (
      output.serve_configs["private-eu"].applications[0].name == "private-eu" &&
      output.serve_configs["private-eu"].applications[0].route_prefix == "/private-eu" &&
      output.serve_configs["private-eu"].applications[0].import_path == "cloud.app:build_app"
    )
    error_message = "The application is named after the tier, has a route prefix (without one Ray gives it no gRPC ingress) and imports cloud.app:build_app."
  }

  assert {
    condition = (
      output.serve_configs["private-eu"].grpc_options.port == 9000 &&
      jsonencode(output.serve_configs["private-eu"].grpc_options.grpc_servicer_functions) == jsonencode([
        "cloud.grpc_servicers.add_inference_servicer",
        "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
      ])
    )
    error_message = "The gRPC proxy listens on grpc_port and serves hybrid.v1.Inference (Generate's request as bytes) and grpc.health.v1."
  }

  assert {
    condition = (
      output.serve_configs["private-eu"].applications[0].deployments[0].autoscaling_config.min_replicas == 1 &&
      output.serve_configs["private-eu"].applications[0].deployments[0].autoscaling_config.max_replicas == 4 &&
      output.serve_configs["private-eu"].applications[0].deployments[0].autoscaling_config.target_ongoing_requests == 16 &&
      output.serve_configs["private-eu"].applications[0].deployments[0].max_queued_requests == 64 &&
      output.serve_configs["private-eu"].applications[0].deployments[0].max_ongoing_requests == 32
    )
    error_message = "Autoscaling bounds, target, queue limit and the default of 32 ongoing requests come from the tier."
  }

  assert {
    condition = (
      output.serve_configs["private-eu"].applications[0].deployments[0].ray_actor_options.num_gpus == 1 &&
      output.serve_configs["private-eu"].applications[0].deployments[0].ray_actor_options.num_cpus == 4 &&
      output.serve_configs["public-batch"].applications[0].deployments[0].ray_actor_options.num_gpus == 0
    )
    error_message = "Each replica asks Ray for the tier's GPUs and CPUs."
  }

  assert {
    condition = (
      output.serve_configs["private-eu"].applications[0].runtime_env.env_vars["HYBRID_TIER"] == "private" &&
      output.serve_configs["private-eu"].applications[0].runtime_env.env_vars["HF_HOME"] == "/models" &&
      output.serve_configs["private-eu"].applications[0].runtime_env.env_vars["HYBRID_REGION"] == "eu-west"
    )
    error_message = "The tier's own HYBRID_* settings win over env_vars, which are passed through otherwise."
  }

  assert {
    condition     = jsonencode(yamldecode(output.serve_config_yaml["private-eu"])) == jsonencode(output.serve_configs["private-eu"])
    error_message = "The YAML form decodes to the same Serve config."
  }
}

run "rayservice_manifest" {
  command = plan

  assert {
    condition = (
      output.rayservice_manifests["private-eu"].apiVersion == "ray.io/v1" &&
      output.rayservice_manifests["private-eu"].kind == "RayService" &&
      output.rayservice_manifests["private-eu"].metadata.name == "private-eu" &&
      output.rayservice_manifests["private-eu"].metadata.namespace == "hybrid"
    )
    error_message = "A ray.io/v1 RayService named after the tier, in the hybrid namespace."
  }

  assert {
    condition     = jsonencode(yamldecode(output.rayservice_manifests["private-eu"].spec.serveConfigV2)) == jsonencode(output.serve_configs["private-eu"])
    error_message = "serveConfigV2 is the tier's Serve config as a YAML string."
  }

  assert {
    condition = (
      output.rayservice_manifests["private-eu"].spec.serveService.metadata.name == "private-eu-grpc" &&
      output.rayservice_manifests["private-eu"].spec.serveService.spec.type == "ClusterIP" &&
      !contains(keys(output.rayservice_manifests["private-eu"].spec.serveService.spec), "loadBalancerSourceRanges") &&
      output.rayservice_manifests["private-eu"].spec.serveService.spec.ports[0].name == "serve" &&
      output.rayservice_manifests["private-eu"].spec.serveService.spec.ports[0].port == 9000
    )
    error_message = "The serve service exposes only the gRPC port, under the name KubeRay keeps (serve), inside the cluster by default."
  }

  assert {
    condition = (
      !contains([for p in output.rayservice_manifests["private-eu"].spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].ports : p.containerPort], 10001) &&
      !contains(keys(output.rayservice_manifests["private-eu"].spec.rayClusterConfig.headGroupSpec.template.spec), "volumes") &&
      !contains([for e in output.rayservice_manifests["private-eu"].spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].env : e.name], "HYBRID_TLS_CERT")
    )
    error_message = "No Ray Client port; without cloud_tls no TLS volume or variables."
  }

  assert {
    condition = (
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.rayVersion == "2.60.0" &&
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.headGroupSpec.rayStartParams["num-cpus"] == "0"
    )
    error_message = "The head runs the pinned Ray and takes no replicas."
  }

  assert {
    condition = (
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.workerGroupSpecs[0].groupName == "gpu" &&
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.workerGroupSpecs[0].minReplicas == 1 &&
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.workerGroupSpecs[0].maxReplicas == 4 &&
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1" &&
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.workerGroupSpecs[0].template.spec.nodeSelector["nvidia.com/gpu.product"] == "nvidia-l4" &&
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.workerGroupSpecs[0].template.spec.tolerations[0].key == "nvidia.com/gpu"
    )
    error_message = "The GPU worker group scales between the replica bounds, asks for the GPUs and lands on the GPU type's nodes."
  }

  assert {
    condition = (
      output.rayservice_manifests["public-batch"].spec.rayClusterConfig.workerGroupSpecs[0].groupName == "cpu" &&
      !contains(keys(output.rayservice_manifests["public-batch"].spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].resources.limits), "nvidia.com/gpu") &&
      length(output.rayservice_manifests["public-batch"].spec.rayClusterConfig.workerGroupSpecs[0].template.spec.nodeSelector) == 0
    )
    error_message = "A tier without GPUs asks for none and is not pinned to GPU nodes."
  }
}

run "consul_registration" {
  command = plan

  assert {
    condition = (
      output.consul_services["private-eu"].ID == "cloud-private-eu" &&
      output.consul_services["private-eu"].Name == "hybrid-inference" &&
      output.consul_services["private-eu"].Address == "10.20.0.5" &&
      output.consul_services["private-eu"].Port == 9000
    )
    error_message = "The tier registers as hybrid-inference at the address it was given."
  }

  assert {
    condition     = output.consul_services["private-eu"].Tags == ["tier:private", "model:smollm2-135m", "precision:bf16"]
    error_message = "Tags are tier, model and precision, in the order ReplicaRecord.tags() writes them."
  }

  assert {
    condition = output.consul_services["private-eu"].Meta == {
      region            = "eu-west"
      zone              = "eu-west-1a"
      capacity          = "128"
      cost_per_hour     = "3"
      grpc_port         = "9000"
      serve_application = "private-eu"
    }
    error_message = "Meta holds strings only: capacity and cost are those of the tier at max_replicas; serve_application lets the router prefer the replicas' own entries."
  }

  assert {
    condition = (
      output.consul_services["private-eu"].Check.GRPC == "10.20.0.5:9000" &&
      output.consul_services["private-eu"].Check.GRPCUseTLS == false &&
      output.consul_services["private-eu"].Check.Interval == "10s" &&
      output.consul_services["private-eu"].Check.DeregisterCriticalServiceAfter == "10m"
    )
    error_message = "The gRPC health check probes the registered address and port."
  }

  assert {
    condition     = output.consul_services["public-batch"].Address == "public-batch-grpc.hybrid.svc.cluster.local"
    error_message = "A tier without a given address registers its in-cluster service name."
  }
}

run "edge_cloud_init" {
  command = plan

  assert {
    condition     = startswith(output.edge_user_data["edge-fra-1"], "#cloud-config\n")
    error_message = "The user data is a cloud-config document."
  }

  assert {
    condition = contains(yamldecode(output.edge_user_data["edge-fra-1"]).runcmd, [
      "/opt/hybrid-edge/venv/bin/hybrid-edge", "install",
      "--artifact", "https://artifacts.example.com/smollm2-int8.tar.gz",
      "--sha256", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "--region", "eu-central",
      "--router", "router.internal:50051",
      "--trust", "/etc/hybrid-edge/artifact-signing.pub",
      "--tls-cert", "/etc/hybrid-edge/tls/agent.crt",
      "--tls-key", "/etc/hybrid-edge/tls/agent.key",
      "--tls-ca", "/etc/hybrid-edge/tls/ca.crt",
    ])
    error_message = "cloud-init runs hybrid-edge install with the node's artifact, checksum, region, router, signing key and TLS files."
  }

  assert {
    condition = one([
      for f in yamldecode(output.edge_user_data["edge-fra-1"]).write_files : f
      if f.path == "/etc/hybrid-edge/tls/agent.key"
      ]).permissions == "0600" && one([
      for f in yamldecode(output.edge_user_data["edge-fra-1"]).write_files : f
      if f.path == "/etc/hybrid-edge/tls/agent.key"
    ]).owner == "hybrid-edge:hybrid-edge"
    error_message = "The node's TLS key is readable by the agent's user only."
  }

  assert {
    condition     = contains([for u in yamldecode(output.edge_user_data["edge-fra-1"]).users : try(u.name, u)], "hybrid-edge")
    error_message = "cloud-init makes the agent's unprivileged user, beside the image's default one."
  }
}

run "edge_plaintext" {
  command = plan

  variables {
    edge_tls               = {}
    edge_plaintext         = true
    artifact_trust_key_pem = ""
  }

  assert {
    condition = contains(yamldecode(output.edge_user_data["edge-fra-1"]).runcmd, [
      "/opt/hybrid-edge/venv/bin/hybrid-edge", "install",
      "--artifact", "https://artifacts.example.com/smollm2-int8.tar.gz",
      "--sha256", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "--region", "eu-central",
      "--router", "router.internal:50051",
      "--plaintext", "--host", "0.0.0.0",
    ])
    error_message = "Without TLS, plain gRPC beyond loopback only as asked for, and no signing key without one."
  }
}

run "cloud_tls" {
  command = plan

  variables {
    cloud_tls = true
  }

  assert {
    condition = (
      contains(output.rayservice_manifests["private-eu"].spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].env, { name = "HYBRID_TLS_CERT", value = "/etc/hybrid/tls/tls.crt" }) &&
      contains(output.rayservice_manifests["private-eu"].spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].env, { name = "HYBRID_TLS_CA", value = "/etc/hybrid/tls/ca.crt" }) &&
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.workerGroupSpecs[0].template.spec.volumes[0].secret.secretName == "private-eu-tls" &&
      output.rayservice_manifests["private-eu"].spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].volumeMounts[0].mountPath == "/etc/hybrid/tls"
    )
    error_message = "With cloud_tls every Ray container mounts the tier's TLS Secret and names its files in HYBRID_TLS_*."
  }

  assert {
    condition     = output.consul_services["private-eu"].Check.GRPCUseTLS == true
    error_message = "Consul's gRPC check speaks TLS to a TLS endpoint."
  }
}

run "load_balancer_for_a_router_outside" {
  command = plan

  variables {
    service_type                = "LoadBalancer"
    load_balancer_source_ranges = ["203.0.113.0/24"]
  }

  assert {
    condition = (
      output.rayservice_manifests["private-eu"].spec.serveService.spec.type == "LoadBalancer" &&
      jsonencode(output.rayservice_manifests["private-eu"].spec.serveService.spec.loadBalancerSourceRanges) == jsonencode(["203.0.113.0/24"])
    )
    error_message = "A load balancer is opened only when asked for, and only to the ranges given."
  }
}

run "gke_accelerator_label" {
  command = plan

  variables {
    gpu_node_label = "cloud.google.com/gke-accelerator"
  }

  assert {
    condition     = jsonencode(output.rayservice_manifests["private-eu"].spec.rayClusterConfig.workerGroupSpecs[0].template.spec.nodeSelector) == jsonencode({ "cloud.google.com/gke-accelerator" = "nvidia-l4" })
    error_message = "GPU workers are pinned through whichever node label the cluster sets for the GPU type."
  }
}
