"""The cloud tier's Serve config: what serve_config writes, and what load_serve_config lets through.

No Ray cluster: Ray's schema and the loader are plain Python. The check of the Terraform
tier-spec module's output against this loader is in tests/terraform/test_tier_spec.py, next to
the module's other offline runs.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cloud import defaults
from cloud.config import CloudConfigError, DeploymentSettings, ReplicaSettings
from cloud.serve_config import TierSpec, dump_serve_config, load_serve_config, serve_config
from hybrid import constants

GPU_TIER = (
    ReplicaSettings(tier="private", region="eu-west", zone="eu-west-1a", precision="bf16", max_batch_size=16),
    DeploymentSettings(min_replicas=1, max_replicas=4, target_ongoing_requests=8, max_queued_requests=64, num_gpus=1),
    "private-eu",
)
CPU_TIER = (
    ReplicaSettings(tier="public", region="us-east", device="cpu", max_wait_ms=20, random_weights=True),
    DeploymentSettings(min_replicas=0, max_replicas=2, num_gpus=0, num_cpus=2),
    "public-batch",
)


@pytest.fixture
def document() -> dict:
    settings, deployment, name = GPU_TIER
    return serve_config(settings, deployment, name)


@pytest.mark.parametrize("tier", [GPU_TIER, CPU_TIER], ids=["gpu", "cpu"])
def test_generated_config_round_trips(tier):
    settings, deployment, name = tier
    document = serve_config(settings, deployment, name, grpc_port=9100)

    assert load_serve_config(document) == [
        TierSpec(app_name=name, settings=settings, deployment=deployment, grpc_port=9100)
    ]
    # The YAML form is the same document, keys in the order written.
    assert yaml.safe_load(dump_serve_config(document)) == document
    assert list(yaml.safe_load(dump_serve_config(document))) == list(document)


def test_generated_config_is_a_valid_serve_config(document):
    schema = ServeDeploySchema.model_validate(document)

    assert schema.proxy_location == "EveryNode"
    assert schema.grpc_options.port == constants.DEFAULT_CLOUD_GRPC_PORT
    assert schema.grpc_options.grpc_servicer_functions == list(defaults.CLOUD_GRPC_SERVICER_FUNCTIONS)
    assert schema.logging_config.enable_access_log is False
    [application] = schema.applications
    assert application.route_prefix == "/private-eu"
    assert application.import_path == defaults.CLOUD_APP_IMPORT_PATH
    # Only the settings that differ from the defaults, and only as HYBRID_* strings.
    assert application.runtime_env["env_vars"] == {
        "HYBRID_REGION": "eu-west",
        "HYBRID_ZONE": "eu-west-1a",
        "HYBRID_PRECISION": "bf16",
        "HYBRID_MAX_BATCH_SIZE": "16",
    }
    [deployment] = application.deployments
    assert deployment.name == defaults.CLOUD_DEPLOYMENT_NAME


def test_serve_config_refuses_what_a_config_file_cannot_say():
    settings, deployment, _ = GPU_TIER
    with pytest.raises(CloudConfigError, match="set num_gpus to 0"):
        serve_config(settings, deployment.model_copy(update={"num_gpus": None}), "private-eu")
    with pytest.raises(CloudConfigError, match="cannot name a Serve application"):
        serve_config(settings, deployment, "private/eu")


def _set(path: str, value):
    """A change to the document: sets the value at a dotted path (list indexes as numbers)."""

    def change(document: dict) -> None:
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value

    return change


def _rename(path: str, old: str, new: str):
    def change(document: dict) -> None:
        target = document
        for part in path.split("."):
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[new] = target.pop(old)

    return change


DEPLOYMENT = "applications.0.deployments.0"

BAD_DOCUMENTS = {
    "typo in a deployment option": (
        _rename(DEPLOYMENT, "max_queued_requests", "max_queued_request"),
        "applications[0].deployments[0] has unknown key 'max_queued_request', which would be ignored silently: "
        "did you mean 'max_queued_requests'?",
    ),
    "null route prefix": (
        _set("applications.0.route_prefix", None),
        "applications[0] (private-eu).route_prefix is null: set it to '/private-eu'; Ray gives an application "
        "without a route prefix no gRPC ingress either",
    ),
    "another import path": (
        _set("applications.0.import_path", "app:main"),
        "applications[0] (private-eu).import_path is 'app:main': set it to 'cloud.app:build_app'",
    ),
    "missing servicer function": (
        _set("grpc_options.grpc_servicer_functions", ["hybrid.v1.inference_pb2_grpc.add_InferenceServicer_to_server"]),
        "grpc_options.grpc_servicer_functions lacks cloud.grpc_servicers.add_inference_servicer, "
        "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server: add them",
    ),
    "unknown tier": (
        _set("applications.0.runtime_env.env_vars.HYBRID_TIER", "edge"),
        "applications[0] (private-eu).runtime_env.env_vars: the cloud tier's environment is wrong: "
        "HYBRID_TIER: Input should be 'private' or 'public'",
    ),
    "unquoted variable": (
        _set("applications.0.runtime_env.env_vars.HYBRID_MAX_BATCH_SIZE", 16),
        "env_vars HYBRID_MAX_BATCH_SIZE: Ray passes only strings to the replicas, so quote the values",
    ),
    "typo in args": (
        _set("applications.0.args", {"max_batch_sise": 8}),
        "applications[0] (private-eu).args has unknown key 'max_batch_sise', which would be ignored silently: "
        "did you mean 'max_batch_size'?",
    ),
    "another deployment name": (
        _set(f"{DEPLOYMENT}.name", "Inference"),
        "applications[0] (private-eu).deployments[0] is named 'Inference': the application has only "
        "'InferenceDeployment', so rename the entry",
    ),
    "unbounded Serve queue": (
        _set(f"{DEPLOYMENT}.max_queued_requests", -1),
        "applications[0] (private-eu).deployments[0]: max_queued_requests: Input should be greater than or equal to 1",
    ),
    "autoscaling bounds the wrong way round": (
        _set(f"{DEPLOYMENT}.autoscaling_config.min_replicas", 9),
        "applications[0] (private-eu).deployments[0].autoscaling_config: Value error, max_replicas (4) must be "
        "greater than or equal to min_replicas (9)",
    ),
    "two tiers in one cluster": (
        lambda document: document["applications"].append(
            {**copy.deepcopy(document["applications"][0]), "name": "second", "route_prefix": "/second"}
        ),
        "the config has 2 applications: give it exactly one, the tier's",
    ),
    "refused by Ray itself": (
        _set(f"{DEPLOYMENT}.max_ongoing_requests", 0),
        "Ray Serve refuses the config: applications.0.deployments.0.max_ongoing_requests: Input should be greater than 0",
    ),
}


@pytest.mark.parametrize("change, message", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_bad_documents_are_refused_with_what_to_change(document, change, message):
    change(document)
    with pytest.raises(CloudConfigError) as refused:
        load_serve_config(document)
    assert message in str(refused.value)


def test_every_problem_is_reported_at_once(document):
    _set("applications.0.route_prefix", None)(document)
    _set("applications.0.import_path", "app:main")(document)
    with pytest.raises(CloudConfigError) as refused:
        load_serve_config(document)
    assert "route_prefix is null" in str(refused.value) and "import_path is 'app:main'" in str(refused.value)


def test_hand_written_config_reads_as_serve_runs_it():
    """Args override env; options the entry leaves out keep build_app's; num_replicas pins the replicas."""
    document = {
        "grpc_options": {"port": 9200, "grpc_servicer_functions": list(defaults.CLOUD_GRPC_SERVICER_FUNCTIONS)},
        "applications": [
            {
                "name": "private-local",
                "import_path": defaults.CLOUD_APP_IMPORT_PATH,
                "runtime_env": {"env_vars": {"HYBRID_REGION": "from-env", "HYBRID_MODEL": "smollm2-135m"}},
                "args": {"region": "from-args", "deployment": {"max_ongoing_requests": 48}},
                "deployments": [
                    {"name": defaults.CLOUD_DEPLOYMENT_NAME, "num_replicas": 3, "ray_actor_options": {"num_cpus": 2}}
                ],
            }
        ],
    }

    [tier] = load_serve_config(document)

    assert tier.app_name == "private-local" and tier.grpc_port == 9200
    assert tier.settings == ReplicaSettings(region="from-args", model="smollm2-135m")
    assert tier.deployment == DeploymentSettings(
        min_replicas=3, max_replicas=3, max_ongoing_requests=48, num_gpus=0, num_cpus=2
    )


def test_a_misspelled_hybrid_variable_is_refused_not_ignored():
    with pytest.raises(CloudConfigError, match="HYBRID_PRECISON"):
        ReplicaSettings.from_env({"HYBRID_PRECISON": "bf16", "HYBRID_CACHE_DIR": "/tmp/cache"})
    assert ReplicaSettings.from_env({"HYBRID_CACHE_DIR": "/tmp/cache", "HYBRID_TIER": "public"}).tier == "public"
    node_tls = {"HYBRID_TLS_CERT": "/etc/hybrid/tls/tls.crt", "HYBRID_TLS_KEY": "/etc/hybrid/tls/tls.key"}
    assert ReplicaSettings.from_env({**node_tls, "HYBRID_TIER": "public"}).tier == "public", "a node's TLS is no typo"
    assert ReplicaSettings.from_env({"HYBRID_REPLICA_PORT": "50070"}).replica_port == 50070


def test_replicas_that_register_themselves_carry_discovery_and_their_cost(tmp_path, capsys):
    from hybrid.cli import main

    out = tmp_path / "serve.yaml"
    args = ["cloud", "config", "--num-gpus", "1", "--discovery", "consul", "--cost-per-hour", "2.5", "--out", str(out)]
    assert main(args) == 0
    [tier] = load_serve_config(yaml.safe_load(out.read_text()))
    assert (tier.settings.discovery, tier.settings.cost_per_hour) == ("consul", 2.5)
    assert main(["cloud", "config", "--num-gpus", "1", "--cost-per-hour", "-1"]) != 0
    assert "cost_per_hour" in capsys.readouterr().err
