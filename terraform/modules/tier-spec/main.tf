locals {
  # hybrid.constants.SERVICE_NAME: the router watches this one service name.
  service_name = "hybrid-inference"

  tiers = { for t in var.tiers : t.name => t }

  grpc_service_names = { for name, t in local.tiers : name => "${name}-grpc" }

  # With TLS, each replica serves mutual TLS on a port it opens itself: Serve's own ports cannot speak TLS.
  own_port = var.direct_ingress.enabled && var.cloud_tls && var.direct_ingress.own_port > 0

  grpc_addresses = {
    for name, t in local.tiers : name => lookup(
      var.grpc_addresses, name, "${local.grpc_service_names[name]}.${var.namespace}.svc.cluster.local"
    )
  }

  labels = {
    for name, t in local.tiers : name => {
      "app.kubernetes.io/name"       = "hybrid-inference"
      "app.kubernetes.io/component"  = "cloud-tier"
      "app.kubernetes.io/managed-by" = "terraform"
      "hybrid/tier"                  = name
      "hybrid/kind"                  = t.kind
    }
  }

  serve_configs = {
    for name, t in local.tiers : name => {
      # Every node runs a proxy, so the gRPC service spreads calls over all of them.
      proxy_location = "EveryNode"
      grpc_options = {
        port                    = var.grpc_port
        grpc_servicer_functions = var.grpc_servicer_functions
      }
      applications = [{
        name = name
        # Never null: Ray gives an application without a route prefix no gRPC ingress either. The
        # proxy picks the application by the `application` metadata key, and with one application
        # per cluster every request (Consul's check included, which sends none) goes to this one.
        route_prefix = "/${name}"
        import_path  = var.import_path
        runtime_env = {
          env_vars = merge(t.env_vars, {
            HYBRID_TIER      = t.kind
            HYBRID_REGION    = t.region
            HYBRID_ZONE      = t.zone
            HYBRID_MODEL     = t.model
            HYBRID_PRECISION = t.precision
            # Reached directly, each replica registers itself (through its node's Consul agent) with
            # its own share of the cost; through the proxy, the tier's one entry below stands for it.
            HYBRID_DISCOVERY     = var.direct_ingress.enabled ? var.direct_ingress.discovery : "none"
            HYBRID_COST_PER_HOUR = tostring(t.cost_per_hour)
          }, local.own_port ? { HYBRID_REPLICA_PORT = tostring(var.direct_ingress.own_port) } : {})
        }
        deployments = [{
          name = var.deployment_name
          autoscaling_config = {
            min_replicas            = t.min_replicas
            max_replicas            = t.max_replicas
            target_ongoing_requests = t.target_ongoing_requests
          }
          max_ongoing_requests = t.max_ongoing_requests
          max_queued_requests  = t.max_queued_requests
          ray_actor_options = {
            num_gpus = t.gpu_count
            num_cpus = t.cpus_per_replica
          }
        }]
      }]
    }
  }

  # What the head needs reachable: the GCS for the workers, the dashboard for the KubeRay operator, and
  # the gRPC proxy. No Ray Client port: nothing here drives the cluster through it.
  container_ports = [
    { name = "gcs-server", containerPort = 6379 },
    { name = "dashboard", containerPort = 8265 },
    { name = "grpc", containerPort = var.grpc_port },
  ]

  # The TLS files of the tier's gRPC endpoints: the Secret <tier>-tls (ray-serve-cluster makes it from its
  # sensitive variables), mounted read-only and named by the HYBRID_TLS_* variables every hop reads.
  tls_dir = "/etc/hybrid/tls"
  tls_env = var.cloud_tls ? [
    { name = "HYBRID_TLS_CERT", value = "${local.tls_dir}/tls.crt" },
    { name = "HYBRID_TLS_KEY", value = "${local.tls_dir}/tls.key" },
    { name = "HYBRID_TLS_CA", value = "${local.tls_dir}/ca.crt" },
  ] : []
  # Present only with TLS, so that a manifest without it stays as it was.
  tls_mounts = { for key, mounts in { volumeMounts = [{ name = "hybrid-tls", mountPath = local.tls_dir, readOnly = true }] } : key => mounts if var.cloud_tls }
  tls_volumes = {
    for name, t in local.tiers : name => {
      # 0440: readable by the container's user and group, nobody else.
      for key, volumes in { volumes = [{ name = "hybrid-tls", secret = { secretName = "${name}-tls", defaultMode = 288 } }] } : key => volumes if var.cloud_tls
    }
  }

  # Serve's direct ingress is a setting of every Ray process, so it travels as the containers' environment.
  ray_env = concat([
    { name = "RAY_SERVE_ENABLE_DIRECT_INGRESS", value = var.direct_ingress.enabled ? "1" : "0" },
    { name = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", value = tostring(var.direct_ingress.draining_period_s) },
  ], local.tls_env)
  # One replica per worker pod, so Serve gives it the first port of its range on that pod. Callers reach the
  # port named replica-grpc: the replica's own mutual-TLS port where it opens one, else Serve's.
  worker_ports = concat(
    [{ name = "grpc", containerPort = var.grpc_port }],
    var.direct_ingress.enabled ? [{
      name          = "replica-grpc"
      containerPort = local.own_port ? var.direct_ingress.own_port : var.direct_ingress.grpc_port
    }] : [],
  )

  worker_resources = {
    for name, t in local.tiers : name => merge(
      { cpu = tostring(t.cpus_per_replica), memory = t.memory_per_replica },
      t.gpu_count > 0 ? { "nvidia.com/gpu" = tostring(t.gpu_count) } : {},
    )
  }

  rayservice_manifests = {
    for name, t in local.tiers : name => {
      apiVersion = "ray.io/v1"
      kind       = "RayService"
      metadata = {
        name      = name
        namespace = var.namespace
        labels    = local.labels[name]
      }
      spec = {
        serveConfigV2 = yamlencode(local.serve_configs[name])
        # KubeRay points this service at whichever cluster is serving, also across upgrades.
        # It keeps only the port named "serve" and targets the same number on the pods, so the
        # gRPC port goes under that name (and the containers must not name another port "serve").
        serveService = {
          metadata = {
            name   = local.grpc_service_names[name]
            labels = local.labels[name]
          }
          spec = merge(
            {
              type  = var.service_type
              ports = [{ name = "serve", port = var.grpc_port }]
            },
            # A load balancer answers only the ranges allowed, when any are given.
            { for key, ranges in { loadBalancerSourceRanges = var.load_balancer_source_ranges } : key => ranges if var.service_type == "LoadBalancer" && length(ranges) > 0 },
          )
        }
        rayClusterConfig = {
          rayVersion              = var.ray_version
          enableInTreeAutoscaling = true
          headGroupSpec = {
            # No CPUs for Ray on the head: replicas land on the GPU workers only.
            rayStartParams = {
              "num-cpus"       = "0"
              "dashboard-host" = "0.0.0.0"
            }
            template = {
              metadata = { labels = local.labels[name] }
              spec = merge({
                containers = [merge({
                  name  = "ray-head"
                  image = t.image
                  env   = local.ray_env
                  ports = local.container_ports
                  resources = {
                    requests = { cpu = var.head_node.cpu, memory = var.head_node.memory }
                    limits   = { cpu = var.head_node.cpu, memory = var.head_node.memory }
                  }
                }, local.tls_mounts)]
              }, local.tls_volumes[name])
            }
          }
          workerGroupSpecs = [{
            groupName = t.gpu_count > 0 ? "gpu" : "cpu"
            # One worker pod holds exactly one replica, so pods scale with Serve's replicas.
            replicas       = t.min_replicas
            minReplicas    = t.min_replicas
            maxReplicas    = t.max_replicas
            rayStartParams = {}
            template = {
              metadata = { labels = local.labels[name] }
              spec = merge({
                containers = [merge({
                  name  = "ray-worker"
                  image = t.image
                  env   = local.ray_env
                  ports = local.worker_ports
                  resources = {
                    requests = local.worker_resources[name]
                    limits   = local.worker_resources[name]
                  }
                }, local.tls_mounts)]
                nodeSelector = t.gpu_count > 0 ? { (var.gpu_node_label) = t.gpu_type } : {}
                # GPU node pools are tainted so that only pods asking for GPUs land there.
                tolerations = t.gpu_count > 0 ? [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }] : []
              }, local.tls_volumes[name])
            }
          }]
        }
      }
    }
  }

  consul_services = {
    for name, t in local.tiers : name => {
      ID      = "cloud-${name}"
      Name    = local.service_name
      Address = local.grpc_addresses[name]
      Port    = var.grpc_port
      Tags    = ["tier:${t.kind}", "model:${t.model}", "precision:${t.precision}"]
      # One entry stands for the whole tier behind its gRPC service, so capacity and cost are
      # those of the tier at max_replicas: their ratio stays cost per sequence, as on the edge.
      Meta = {
        region        = t.region
        zone          = t.zone
        capacity      = tostring(t.max_replicas * t.max_ongoing_requests)
        cost_per_hour = tostring(t.max_replicas * t.cost_per_hour)
        grpc_port     = tostring(var.grpc_port)
        # The router leaves this entry out while replicas of the application are listed themselves.
        serve_application = name
      }
      # Consul's native gRPC check: the proxy routes grpc.health.v1.Health/Check to the deployment's Check method.
      Check = {
        Name                           = "gRPC health of tier ${name}"
        GRPC                           = "${local.grpc_addresses[name]}:${var.grpc_port}"
        GRPCUseTLS                     = var.cloud_tls
        Interval                       = var.health_check.interval
        Timeout                        = var.health_check.timeout
        DeregisterCriticalServiceAfter = var.health_check.deregister_critical_service_after
      }
    }
  }

  # hybrid-edge install's default prefix holds its venv at PREFIX/venv: installed there first, the
  # installer finds itself running from it and installs nothing twice.
  edge_venv = "/opt/hybrid-edge/venv"
  # hybrid-edge install's defaults: the agent's user, and where the node keeps its files.
  edge_user       = "hybrid-edge"
  edge_tls_dir    = "/etc/hybrid-edge/tls"
  edge_trust_file = "/etc/hybrid-edge/artifact-signing.pub"

  # Whether a node has TLS is no secret, only the files are.
  edge_has_tls = { for n in var.edge_nodes : n.name => nonsensitive(try(var.edge_tls[n.name].cert_pem, "") != "") }
  edge_has_ca  = { for n in var.edge_nodes : n.name => nonsensitive(try(var.edge_tls[n.name].ca_pem, "") != "") }

  edge_files = {
    for n in var.edge_nodes : n.name => concat(
      local.edge_has_tls[n.name] ? [
        { path = "${local.edge_tls_dir}/agent.crt", content = var.edge_tls[n.name].cert_pem, permissions = "0644" },
        # Written after the users exist (defer), readable by the agent's user only.
        {
          path  = "${local.edge_tls_dir}/agent.key", content = var.edge_tls[n.name].key_pem, permissions = "0600",
          owner = "${local.edge_user}:${local.edge_user}", defer = true
        },
      ] : [],
      local.edge_has_ca[n.name] ? [
        { path = "${local.edge_tls_dir}/ca.crt", content = var.edge_tls[n.name].ca_pem, permissions = "0644" },
      ] : [],
      var.artifact_trust_key_pem != "" ? [
        { path = local.edge_trust_file, content = var.artifact_trust_key_pem, permissions = "0644" },
      ] : [],
    )
  }

  edge_install_flags = {
    for n in var.edge_nodes : n.name => concat(
      var.artifact_trust_key_pem != "" ? ["--trust", local.edge_trust_file] : [],
      local.edge_has_tls[n.name] ? ["--tls-cert", "${local.edge_tls_dir}/agent.crt", "--tls-key", "${local.edge_tls_dir}/agent.key"] : ["--plaintext", "--host", "0.0.0.0"],
      local.edge_has_ca[n.name] ? ["--tls-ca", "${local.edge_tls_dir}/ca.crt"] : [],
    )
  }

  edge_user_data = {
    for n in var.edge_nodes : n.name => join("\n", [
      "#cloud-config",
      yamlencode({
        package_update = true
        packages       = ["python3-venv"]
        # The agent's own unprivileged user, made before the key file it owns is written.
        users = ["default", {
          name = local.edge_user, system = true, shell = "/usr/sbin/nologin", lock_passwd = true, no_create_home = true
        }]
        write_files = local.edge_files[n.name]
        # Argument lists, not shell lines: no value here is ever parsed by a shell.
        runcmd = [
          ["python3", "-m", "venv", local.edge_venv],
          ["${local.edge_venv}/bin/pip", "install", var.edge_package],
          concat([
            "${local.edge_venv}/bin/hybrid-edge", "install",
            "--artifact", n.artifact_url,
            "--sha256", n.artifact_sha256,
            "--region", n.region,
            "--router", n.router,
          ], local.edge_install_flags[n.name]),
        ]
      }),
    ])
  }
}
