# Copy to terraform.tfvars and change every value to your own. kuberay_chart_repository
# comes from the environment (see README.md).
project_id     = "my-gpu-project"
gcp_region     = "us-central1"
gcp_zone       = "us-central1-a"
consul_address = "consul.internal:8501"
image          = "hybrid-cloud:0.1.0"
cost_per_hour  = 0.9
max_replicas   = 4
