"""The provider-free core module: Terraform's own checks, its refusals, and what it renders."""

from __future__ import annotations

import json

import pytest
import yaml

from cloud import defaults
from cloud.config import DeploymentSettings
from cloud.serve_config import load_serve_config
from hybrid import constants
from hybrid.discovery import ReplicaRecord
from tests.terraform.conftest import SAMPLE_TIER, write_tfvars

# PEM stand-ins with the markers the modules check for: no real key is ever committed.
EDGE_TLS = {
    "cert_pem": "-----BEGIN CERTIFICATE-----\nnode certificate\n-----END CERTIFICATE-----\n",
    "key_pem": "-----BEGIN PRIVATE KEY-----\nnode key\n-----END PRIVATE KEY-----\n",
    "ca_pem": "-----BEGIN CERTIFICATE-----\nrouter CA\n-----END CERTIFICATE-----\n",
}
EDGE_NODE = {
    "name": "edge-fra-1",
    "region": "eu-central",
    "artifact_url": "https://artifacts.example.com/smollm2-int8.tgz",
    "artifact_sha256": "ab" * 32,
    "router": "router.internal:50051",
}


def flat(text: str) -> str:
    """Terraform wraps diagnostics at 78 columns; compare messages with whitespace collapsed."""
    return " ".join(text.split())


def test_init_and_validate(tier_spec):
    result = tier_spec.validate()
    assert result.retcode == 0, result.value
    assert result.value["valid"] is True
    assert result.value["warning_count"] == 0, result.value["diagnostics"]


def test_terraform_test_files_pass(tier_spec):
    result = tier_spec.test()
    summaries = [event["test_summary"] for event in result.value if event.get("type") == "test_summary"]
    failures = [
        f"{event['@message']}: {event.get('diagnostic', {}).get('detail', '')}"
        for event in result.value
        if event.get("@level") == "error"
    ]
    assert result.retcode == 0, failures
    assert summaries and summaries[-1]["status"] == "pass", summaries
    assert summaries[-1]["failed"] == 0 and summaries[-1]["errored"] == 0
    # outputs.tftest.hcl and validation.tftest.hcl together; fewer means a file was not picked up.
    assert summaries[-1]["passed"] >= 20


BAD_TIERS = {
    "negative replicas": (
        {"min_replicas": -1},
        "min_replicas must be a whole number, 0 or more (0 lets the tier scale to zero): change min_replicas of: private-eu.",
    ),
    "min above max": (
        {"min_replicas": 5, "max_replicas": 2},
        "min_replicas may not exceed max_replicas: lower min_replicas or raise max_replicas of: private-eu (min 5 > max 2).",
    ),
    "unknown kind": (
        {"kind": "hybrid"},
        'A tier\'s kind must be "private" or "public" (edge nodes use edge_nodes instead). Change kind of: private-eu (hybrid).',
    ),
    "negative GPU count": (
        {"gpu_count": -1},
        "gpu_count is GPUs per replica and must be a whole number, 0 or more (0 runs the tier on CPUs): change gpu_count of: private-eu.",
    ),
    "negative cost": (
        {"cost_per_hour": -0.5},
        "cost_per_hour must be 0 or more (what one replica costs an hour): change cost_per_hour of: private-eu.",
    ),
    "empty name": (
        {"name": ""},
        "Every tier needs a name of 1 to 40 lowercase letters, digits or '-', starting with a letter and not ending with '-' (it becomes a Kubernetes name). Change the name of: tiers[0] (\"\").",
    ),
}


def test_bad_values_are_refused_with_the_modules_own_message(tier_spec, tmp_path):
    for case, (change, message) in BAD_TIERS.items():
        var_file = write_tfvars(tmp_path, case.replace(" ", "-"), {"tiers": [{**SAMPLE_TIER, **change}]})
        result = tier_spec.plan(var_files=[var_file], json=False)
        assert result.retcode == 1, f"{case}: the plan went through"
        assert "Invalid value for variable" in result.error, f"{case}: {result.error}"
        assert message in flat(result.error), f"{case}: {flat(result.error)}"


def apply_sample(tier_spec, tmp_path, **extra) -> dict:
    var_file = write_tfvars(tmp_path, "sample", {"tiers": [SAMPLE_TIER], **extra})
    applied = tier_spec.apply(var_files=[var_file], json=False)
    assert applied.retcode == 0, applied.error
    outputs = tier_spec.output()
    assert outputs.retcode == 0, outputs.error
    return {name: output["value"] for name, output in outputs.value.items()}


@pytest.fixture(scope="module")
def sample_outputs(tier_spec, tmp_path_factory) -> dict:
    """The module's outputs for SAMPLE_TIER at a given address, applied once for the checks that read them."""
    return apply_sample(tier_spec, tmp_path_factory.mktemp("sample"), grpc_addresses={"private-eu": "10.20.0.5"})


def test_consul_payload_parses_into_the_routers_record(sample_outputs):
    # The payload has agent/service/register's capitalised keys, which from_service reads as they are.
    payload = sample_outputs["consul_services"]["private-eu"]

    record = ReplicaRecord.from_service(payload)

    assert record == ReplicaRecord(
        id="cloud-private-eu",
        address="10.20.0.5",
        port=9000,
        tier="private",
        model="smollm2-135m",
        precision="bf16",
        region="eu-west",
        zone="eu-west-1a",
        capacity=4 * 32,
        cost_per_hour=4 * 0.75,
        application="private-eu",
    )
    # Same fields, names and value types as the router's own registrations, plus the health check.
    expected = record.to_service()
    assert set(payload) == set(expected) | {"Check"}
    assert payload["Name"] == constants.SERVICE_NAME
    assert payload["Tags"] == expected["Tags"]
    assert set(payload["Meta"]) == set(expected["Meta"])
    assert all(isinstance(value, str) for value in payload["Meta"].values())
    # Consul's native gRPC check at the proxy, which routes grpc.health.v1 to the deployment's Check.
    assert payload["Check"]["GRPC"] == "10.20.0.5:9000"
    assert payload["Check"]["GRPCUseTLS"] is False
    assert payload["Check"]["Interval"] and payload["Check"]["DeregisterCriticalServiceAfter"]


def test_serve_config_is_what_the_cloud_tier_loads(sample_outputs):
    """The cross-check: the cloud tier's own loader reads the module's Serve config as the tier was given,
    and the router's parser reads the tier's Consul entry to the same tier, model and numbers."""
    [tier] = load_serve_config(sample_outputs["serve_configs"]["private-eu"])

    assert tier.app_name == SAMPLE_TIER["name"]
    assert tier.grpc_port == constants.DEFAULT_CLOUD_GRPC_PORT
    settings = tier.settings
    assert (settings.tier, settings.region, settings.zone, settings.model, settings.precision) == (
        SAMPLE_TIER["kind"],
        SAMPLE_TIER["region"],
        SAMPLE_TIER["zone"],
        SAMPLE_TIER["model"],
        "bf16",
    )
    assert tier.deployment == DeploymentSettings(
        min_replicas=SAMPLE_TIER["min_replicas"],
        max_replicas=SAMPLE_TIER["max_replicas"],
        target_ongoing_requests=SAMPLE_TIER["target_ongoing_requests"],
        max_ongoing_requests=constants.MAX_BATCH_SIZE,
        max_queued_requests=SAMPLE_TIER["max_queued_requests"],
        num_gpus=SAMPLE_TIER["gpu_count"],
        num_cpus=4,
    )

    record = ReplicaRecord.from_service(sample_outputs["consul_services"]["private-eu"])
    assert (record.tier, record.model, record.precision, record.region, record.zone) == (
        settings.tier,
        settings.model,
        settings.precision,
        settings.region,
        settings.zone,
    )
    assert record.port == tier.grpc_port
    assert record.capacity == tier.deployment.max_replicas * tier.deployment.max_ongoing_requests
    assert record.cost_per_hour == tier.deployment.max_replicas * SAMPLE_TIER["cost_per_hour"]


def test_serve_config_structure(sample_outputs):
    outputs = sample_outputs
    config = outputs["serve_configs"]["private-eu"]

    assert config["grpc_options"] == {
        "port": 9000,
        "grpc_servicer_functions": list(defaults.CLOUD_GRPC_SERVICER_FUNCTIONS),
    }
    [application] = config["applications"]
    assert application["name"] == "private-eu"
    assert application["route_prefix"] == "/private-eu"
    assert application["import_path"] == "cloud.app:build_app"
    assert application["runtime_env"]["env_vars"]["HYBRID_TIER"] == "private"
    [deployment] = application["deployments"]
    assert deployment["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16}
    assert deployment["max_queued_requests"] == 64
    assert deployment["max_ongoing_requests"] == constants.MAX_BATCH_SIZE
    assert deployment["ray_actor_options"] == {"num_gpus": 1, "num_cpus": 4}

    manifest = outputs["rayservice_manifests"]["private-eu"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    # serveConfigV2 is a YAML string that says exactly what serve_configs says.
    assert yaml.safe_load(manifest["spec"]["serveConfigV2"]) == config
    assert yaml.safe_load(outputs["serve_config_yaml"]["private-eu"]) == config
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    [workers] = cluster["workerGroupSpecs"]
    assert (workers["minReplicas"], workers["maxReplicas"]) == (1, 4)
    [container] = workers["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert workers["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "nvidia-l4"}
    assert manifest["spec"]["serveService"]["spec"]["ports"] == [{"name": "serve", "port": 9000}]
    # Direct ingress by default: every Ray process knows it, each replica registers itself with its own cost.
    assert {"name": "RAY_SERVE_ENABLE_DIRECT_INGRESS", "value": "1"} in container["env"]
    assert {"name": "replica-grpc", "containerPort": 40000} in container["ports"]
    env = application["runtime_env"]["env_vars"]
    assert (env["HYBRID_DISCOVERY"], env["HYBRID_COST_PER_HOUR"]) == ("consul", "0.75")


def test_edge_user_data_runs_the_installer(tier_spec, tmp_path):
    # Shell metacharacters in a value must reach the installer as they are.
    artifact_url = "https://artifacts.example.com/smollm2-int8.tgz?sig=a&b='c'#$(id)"
    node = {
        "name": "edge-fra-1",
        "region": "eu-central",
        "artifact_url": artifact_url,
        "artifact_sha256": "ab" * 32,
        "router": "router.internal:50051",
    }
    outputs = apply_sample(tier_spec, tmp_path, edge_nodes=[node], edge_tls={"edge-fra-1": EDGE_TLS})
    user_data = outputs["edge_user_data"]["edge-fra-1"]

    assert user_data.startswith("#cloud-config\n")
    cloud_config = yaml.safe_load(user_data)
    assert cloud_config["runcmd"][-1] == [
        "/opt/hybrid-edge/venv/bin/hybrid-edge",
        "install",
        "--artifact",
        artifact_url,
        "--sha256",
        "ab" * 32,
        "--region",
        "eu-central",
        "--router",
        "router.internal:50051",
        "--tls-cert",
        "/etc/hybrid-edge/tls/agent.crt",
        "--tls-key",
        "/etc/hybrid-edge/tls/agent.key",
        "--tls-ca",
        "/etc/hybrid-edge/tls/ca.crt",
    ]
    assert ["/opt/hybrid-edge/venv/bin/pip", "install", "hybrid-inference[edge,consul]"] in cloud_config["runcmd"]
    # The files the flags name, the key readable by the agent's user only (made by cloud-init beforehand).
    files = {entry["path"]: entry for entry in cloud_config["write_files"]}
    assert files["/etc/hybrid-edge/tls/agent.key"]["content"] == EDGE_TLS["key_pem"]
    assert (
        files["/etc/hybrid-edge/tls/agent.key"]["permissions"],
        files["/etc/hybrid-edge/tls/agent.key"]["owner"],
    ) == (
        "0600",
        "hybrid-edge:hybrid-edge",
    )
    assert files["/etc/hybrid-edge/tls/agent.crt"]["content"] == EDGE_TLS["cert_pem"]
    assert {"name": "hybrid-edge", "system": True, "shell": "/usr/sbin/nologin", "lock_passwd": True,
            "no_create_home": True} in cloud_config["users"]  # fmt: skip


def test_user_data_carrying_a_key_is_a_sensitive_output(tier_spec, tmp_path):
    node = {**EDGE_NODE, "name": "edge-ams-1"}
    apply_sample(tier_spec, tmp_path, edge_nodes=[node], edge_tls={"edge-ams-1": EDGE_TLS})
    outputs = tier_spec.output().value
    assert outputs["edge_user_data"]["sensitive"] is True
    assert outputs["rayservice_manifests"]["sensitive"] is False
    # Neither the key nor the certificate ever lands in a manifest or a Serve config.
    public = json.dumps({name: output["value"] for name, output in outputs.items() if name != "edge_user_data"})
    assert "node key" not in public


def test_an_edge_node_without_tls_is_refused_unless_plaintext_is_asked_for(tier_spec, tmp_path):
    refused = tier_spec.plan(var_files=[write_tfvars(tmp_path, "no-tls", {"edge_nodes": [EDGE_NODE]})], json=False)
    assert refused.retcode == 1
    assert (
        "An edge agent without TLS binds loopback only, where no router reaches it: give edge_tls for: edge-fra-1"
        in flat(refused.error)
    )
    outputs = apply_sample(tier_spec, tmp_path, edge_nodes=[EDGE_NODE], edge_plaintext=True)
    cloud_config = yaml.safe_load(outputs["edge_user_data"]["edge-fra-1"])
    assert cloud_config["runcmd"][-1][-3:] == ["--plaintext", "--host", "0.0.0.0"]
    assert cloud_config["write_files"] == []


def test_with_tls_each_replica_serves_mutual_tls_on_its_own_port(tier_spec, tmp_path):
    """Serve's ports cannot speak TLS: with cloud_tls each replica opens its own port, and that is the one the
    pods expose to callers (and the NetworkPolicy opens); the cloud tier's own loader reads the setting."""
    outputs = apply_sample(tier_spec, tmp_path, cloud_tls=True)
    config = outputs["serve_configs"]["private-eu"]
    [application] = config["applications"]
    assert application["runtime_env"]["env_vars"]["HYBRID_REPLICA_PORT"] == "41000"
    [tier] = load_serve_config(config)
    assert tier.settings.replica_port == 41000
    cluster = outputs["rayservice_manifests"]["private-eu"]["spec"]["rayClusterConfig"]
    [container] = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"]
    assert [p for p in container["ports"] if p["name"] == "replica-grpc"] == [
        {"name": "replica-grpc", "containerPort": 41000}
    ]
    assert {"name": "HYBRID_TLS_CERT", "value": "/etc/hybrid/tls/tls.crt"} in container["env"]
    # Without TLS the replica keeps Serve's port, and own_port 0 asks for that with TLS too.
    plain = apply_sample(tier_spec, tmp_path, cloud_tls=False)["serve_configs"]["private-eu"]
    assert "HYBRID_REPLICA_PORT" not in plain["applications"][0]["runtime_env"]["env_vars"]
    serve_port = apply_sample(tier_spec, tmp_path, cloud_tls=True, direct_ingress={"own_port": 0})
    env = serve_port["serve_configs"]["private-eu"]["applications"][0]["runtime_env"]["env_vars"]
    assert "HYBRID_REPLICA_PORT" not in env
