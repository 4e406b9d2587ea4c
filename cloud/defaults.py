"""Defaults of the cloud tier (Ray Serve)."""

from __future__ import annotations

# Must match terraform/modules/tier-spec: the names the generated Serve config and KubeRay use.
CLOUD_APP_IMPORT_PATH = "cloud.app:build_app"
CLOUD_DEPLOYMENT_NAME = "InferenceDeployment"
# How often the tier checks that discovery still lists it, and registers it again when not.
CLOUD_REREGISTER_INTERVAL_S = 10.0
# How often a replica reached directly checks its record and drops those of replicas Serve stopped.
CLOUD_DIRECTORY_INTERVAL_S = 2.0
# Serve's hold on a stopping direct-ingress replica; the router follows discovery within a poll.
CLOUD_DIRECT_DRAINING_PERIOD_S = 2.0
# Requests Serve itself holds for busy replicas before its proxy answers with backpressure.
CLOUD_SERVE_MAX_QUEUED_REQUESTS = 64
# After an answer's first message, a cloud replica streams at most one message per this interval.
CLOUD_STREAM_INTERVAL_MS = 20.0
# A replica's GIL switch interval: its engine thread gets the GIL back within this after each GPU wait.
CLOUD_GIL_SWITCH_INTERVAL_MS = 1.0
# Longest context (prompt + answer) of a cloud replica; its KV cache grows to the longest running sequence, up to this.
CLOUD_MAX_CONTEXT_TOKENS = 2048
# Ray's proxy does not serve grpc.health.v1 by itself; the deployment answers it (see cloud/app.py).
CLOUD_GRPC_SERVICER_FUNCTIONS = (
    "cloud.grpc_servicers.add_inference_servicer",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
)
