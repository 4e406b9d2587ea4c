# Copy to terraform.tfvars and change every value to your own. kuberay_chart_repository
# comes from the environment (see README.md).
consul_address = "consul.internal:8501"
image          = "hybrid-cloud:0.1.0"
region         = "eu-west"
zone           = "eu-west-dc1"
gpu_type       = "NVIDIA-A100-SXM4-80GB"
min_replicas   = 1
max_replicas   = 4
cost_per_hour  = 1.1

router_address       = "router.internal:50051"
edge_artifact_url    = "https://artifacts.internal/smollm2-135m-int8.tar.gz"
edge_artifact_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
edge_nodes = [
  { name = "edge-fra-1", region = "eu-central" },
]
