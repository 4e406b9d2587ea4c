"""The cloud tier's Ray Serve config file: written by ``serve_config``, read by ``load_serve_config``.

Ray's ``ServeDeploySchema`` ignores keys it does not know and accepts configs that deploy but
cannot serve the tier: a null ``route_prefix`` leaves the application without gRPC ingress, a
missing servicer function leaves the proxy without ``hybrid.v1.Inference`` or the health check
Consul probes. Every Serve config of the cloud tier (ours, the Terraform tier-spec module's, a
hand-written one) goes through ``load_serve_config``, which checks what Ray does not and says
what to change.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import yaml
from pydantic import BaseModel, ValidationError

from cloud import defaults
from cloud.config import CloudConfigError, DeploymentSettings, ReplicaSettings
from hybrid import constants

# What `serve build` writes: the proxy's HTTP side on all interfaces, at Serve's usual port.
HTTP_OPTIONS = {"host": "0.0.0.0", "port": 8000}

# An application name becomes the route prefix /<name>, so it must be one path segment.
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# DeploymentSettings fields and where they live in a deployment entry of the config.
_DEPLOYMENT_KEYS = {
    "min_replicas": "autoscaling_config.min_replicas",
    "max_replicas": "autoscaling_config.max_replicas",
    "target_ongoing_requests": "autoscaling_config.target_ongoing_requests",
    "num_gpus": "ray_actor_options.num_gpus",
    "num_cpus": "ray_actor_options.num_cpus",
}


@dataclass(frozen=True)
class TierSpec:
    """One cloud tier as a Serve config describes it: what its replicas run and how Serve runs them."""

    app_name: str
    settings: ReplicaSettings
    deployment: DeploymentSettings
    grpc_port: int


def serve_config(
    settings: ReplicaSettings,
    deployment: DeploymentSettings,
    app_name: str,
    grpc_port: int = constants.DEFAULT_CLOUD_GRPC_PORT,
    router_prometheus: str = "",
) -> dict:
    """The Serve config document (``serve deploy`` schema) of one tier, one application per cluster.

    The replica settings travel as ``HYBRID_*`` variables, the way the tier-spec module hands
    them over, so both kinds of config read back through the same ``ReplicaSettings.from_env``.
    With ``router_prometheus`` (the URL of the Prometheus that scrapes the router), Serve scales the
    tier on the router's scaling signal too (``cloud.autoscaling``).
    """
    if not _APP_NAME.match(app_name):
        raise CloudConfigError(
            f"app_name {app_name!r} cannot name a Serve application reached at /{app_name}: use letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if deployment.num_gpus is None:
        raise CloudConfigError(
            "num_gpus is unset, and a Serve config is written before any cluster is seen: set num_gpus to 0 for "
            "CPU replicas or to the GPUs each replica takes"
        )
    return {
        "proxy_location": "EveryNode",
        "http_options": dict(HTTP_OPTIONS),
        "grpc_options": {
            "port": grpc_port,
            "grpc_servicer_functions": list(defaults.CLOUD_GRPC_SERVICER_FUNCTIONS),
        },
        "logging_config": {"enable_access_log": False},
        "applications": [
            {
                "name": app_name,
                # Never null: Ray gives an application without a route prefix no gRPC ingress either.
                "route_prefix": f"/{app_name}",
                "import_path": defaults.CLOUD_APP_IMPORT_PATH,
                "runtime_env": {"env_vars": settings.to_env()},
                "deployments": [
                    {
                        "name": defaults.CLOUD_DEPLOYMENT_NAME,
                        "autoscaling_config": _autoscaling(deployment, settings.tier, router_prometheus),
                        "max_ongoing_requests": deployment.max_ongoing_requests,
                        "max_queued_requests": deployment.max_queued_requests,
                        "ray_actor_options": deployment.ray_actor_options(),
                    }
                ],
            }
        ],
    }


def _autoscaling(deployment: DeploymentSettings, tier: str, router_prometheus: str) -> dict:
    config = deployment.autoscaling_config()
    if router_prometheus:
        from cloud.autoscaling import POLICY_IMPORT_PATH

        kwargs = {"tier": tier, "prometheus_address": router_prometheus}
        config["policy"] = {"policy_function": POLICY_IMPORT_PATH, "policy_kwargs": kwargs}
    return config


def dump_serve_config(document: dict) -> str:
    """The config as YAML, keys in the order written, ready for ``serve deploy`` or KubeRay's serveConfigV2."""
    return yaml.safe_dump(document, sort_keys=False)


def load_serve_config(document: dict) -> list[TierSpec]:
    """The tiers a Serve config runs, after checking it as Ray and as the cloud tier would.

    Raises ``CloudConfigError`` naming every problem found and what to change.
    """
    from ray.serve.schema import ServeDeploySchema

    if not isinstance(document, dict):
        raise CloudConfigError(f"a Serve config is a mapping, not {type(document).__name__}: pass the parsed document")
    try:
        schema = ServeDeploySchema.model_validate(document)
    except ValidationError as error:
        raise CloudConfigError(f"Ray Serve refuses the config: {_pydantic_problems(error)}") from None

    problems = _unknown_keys(document)
    servicers = schema.grpc_options.grpc_servicer_functions if schema.grpc_options else []
    missing = [name for name in defaults.CLOUD_GRPC_SERVICER_FUNCTIONS if name not in servicers]
    if missing:
        problems.append(
            f"grpc_options.grpc_servicer_functions lacks {', '.join(missing)}: add {'them' if len(missing) > 1 else 'it'}; "
            "the gRPC proxy serves hybrid.v1.Inference and Consul's grpc.health.v1 check only through these"
        )
    if len(schema.applications) != 1:
        problems.append(
            f"the config has {len(schema.applications)} applications: give it exactly one, the tier's. The proxy "
            "picks an application by the 'application' metadata key, which neither the router nor Consul's check "
            "sends, so a cluster serves one tier"
        )
    grpc_port = schema.grpc_options.port if schema.grpc_options else constants.DEFAULT_CLOUD_GRPC_PORT
    tiers = []
    for index, (raw, application) in enumerate(zip(document.get("applications") or [], schema.applications)):
        where = f"applications[{index}] ({application.name})"
        tier = _load_application(raw, application, where, grpc_port, problems)
        if tier is not None:
            tiers.append(tier)
    if problems:
        raise CloudConfigError("the Serve config cannot run the cloud tier: " + "; ".join(problems))
    return tiers


def _load_application(raw: dict, application, where: str, grpc_port: int, problems: list[str]) -> TierSpec | None:
    """One application's tier, or None with the reasons appended to problems."""
    if application.import_path != defaults.CLOUD_APP_IMPORT_PATH:
        problems.append(
            f"{where}.import_path is {application.import_path!r}: set it to {defaults.CLOUD_APP_IMPORT_PATH!r}, "
            "the cloud tier's application builder"
        )
    if application.route_prefix is None:
        problems.append(
            f"{where}.route_prefix is null: set it to '/{application.name}'; Ray gives an application without a "
            "route prefix no gRPC ingress either"
        )
    elif not application.route_prefix.startswith("/"):
        problems.append(
            f"{where}.route_prefix {application.route_prefix!r} must start with '/': use '/{application.name}'"
        )

    settings = _replica_settings(raw, where, problems)
    entries = raw.get("deployments") or []
    for position, entry in enumerate(entries):
        if entry["name"] != defaults.CLOUD_DEPLOYMENT_NAME:
            problems.append(
                f"{where}.deployments[{position}] is named {entry['name']!r}: the application has only "
                f"{defaults.CLOUD_DEPLOYMENT_NAME!r}, so rename the entry"
            )
    ours = [position for position, entry in enumerate(entries) if entry["name"] == defaults.CLOUD_DEPLOYMENT_NAME]
    if not ours:
        problems.append(
            f"{where} has no deployment named {defaults.CLOUD_DEPLOYMENT_NAME!r}: add one with the tier's "
            "autoscaling_config, max_ongoing_requests, max_queued_requests and ray_actor_options"
        )
        return None
    try:
        # The options build_app sets in code, which the deployment entry overrides.
        code = DeploymentSettings.model_validate((raw.get("args") or {}).get("deployment") or {})
    except ValidationError as error:
        problems.append(f"{where}.args.deployment: {_pydantic_problems(error)}")
        return None
    deployment = _deployment_settings(entries[ours[0]], code, f"{where}.deployments[{ours[0]}]", problems)
    if settings is None or deployment is None:
        return None
    return TierSpec(app_name=application.name, settings=settings, deployment=deployment, grpc_port=grpc_port)


def _replica_settings(raw: dict, where: str, problems: list[str]) -> ReplicaSettings | None:
    """HYBRID_* variables, overridden by the application's args: what ``cloud.app.build_app`` reads."""
    env_vars = (raw.get("runtime_env") or {}).get("env_vars") or {}
    not_strings = [name for name, value in env_vars.items() if not isinstance(value, str)]
    if not_strings:
        problems.append(
            f"{where}.runtime_env.env_vars {', '.join(not_strings)}: Ray passes only strings to the replicas, "
            "so quote the values"
        )
        return None
    args = dict(raw.get("args") or {})
    args.pop("deployment", None)
    unknown = sorted(set(args) - set(ReplicaSettings.model_fields))
    if unknown:
        problems.extend(_unknown_key_problem(f"{where}.args", key, ReplicaSettings.model_fields) for key in unknown)
        return None
    try:
        ReplicaSettings.from_env(env_vars)
    except CloudConfigError as error:
        problems.append(f"{where}.runtime_env.env_vars: {error}")
        return None
    try:
        return ReplicaSettings.from_env_and_args(env_vars, args)
    except ValidationError as error:
        problems.append(f"{where}.args (over runtime_env.env_vars): {_pydantic_problems(error)}")
        return None


def _deployment_settings(
    entry: dict, code: DeploymentSettings, where: str, problems: list[str]
) -> DeploymentSettings | None:
    """The deployment entry's options over ``code``, those build_app sets (the app's args["deployment"]).

    Serve replaces an option the entry names, a nested one (autoscaling_config, ray_actor_options)
    as a whole, so keys left out of those take Ray's defaults, not the code's.
    """
    from ray.serve.config import AutoscalingConfig

    values = code.model_dump()
    try:
        autoscaling = entry.get("autoscaling_config")
        if entry.get("num_replicas") == "auto":
            autoscaling = {**AutoscalingConfig.default().model_dump(), **(autoscaling or {})}
        if autoscaling:
            scaling = AutoscalingConfig(**autoscaling)
            values.update(
                min_replicas=scaling.min_replicas,
                max_replicas=scaling.max_replicas,
                target_ongoing_requests=scaling.target_ongoing_requests,
            )
        elif isinstance(entry.get("num_replicas"), int):
            values.update(min_replicas=entry["num_replicas"], max_replicas=entry["num_replicas"])
    except ValidationError as error:
        problems.append(f"{where}.autoscaling_config: {_pydantic_problems(error)}")
        return None
    for key in ("max_ongoing_requests", "max_queued_requests"):
        if key in entry:
            values[key] = entry[key]
    if "ray_actor_options" in entry:
        actor = entry["ray_actor_options"] or {}
        # Ray's own defaults for an actor option the entry leaves out.
        values.update(num_gpus=actor.get("num_gpus", 0), num_cpus=actor.get("num_cpus", 1))
    try:
        return DeploymentSettings.model_validate(values)
    except ValidationError as error:
        problems.append(f"{where}: {_pydantic_problems(error, _DEPLOYMENT_KEYS)}")
        return None


def _unknown_keys(document: dict) -> list[str]:
    """Keys no Serve schema knows, at every level the cloud tier's config uses; Ray drops them silently."""
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
        gRPCOptionsSchema,
    )

    sections: list[tuple[str, object, type[BaseModel]]] = [
        ("the config", document, ServeDeploySchema),
        ("http_options", document.get("http_options"), HTTPOptionsSchema),
        ("grpc_options", document.get("grpc_options"), gRPCOptionsSchema),
    ]
    for index, application in enumerate(document.get("applications") or []):
        sections.append((f"applications[{index}]", application, ServeApplicationSchema))
        for position, entry in enumerate(application.get("deployments") or []):
            where = f"applications[{index}].deployments[{position}]"
            sections.append((where, entry, DeploymentSchema))
            sections.append((f"{where}.autoscaling_config", entry.get("autoscaling_config"), AutoscalingConfig))
            sections.append((f"{where}.ray_actor_options", entry.get("ray_actor_options"), RayActorOptionsSchema))
    return [
        _unknown_key_problem(where, key, model.model_fields)
        for where, section, model in sections
        if isinstance(section, dict)
        for key in section
        if key not in model.model_fields
    ]


def _unknown_key_problem(where: str, key: str, known) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    change = f"did you mean {close[0]!r}?" if close else f"known keys are {', '.join(sorted(known))}"
    return f"{where} has unknown key {key!r}, which would be ignored silently: {change}"


def _pydantic_problems(error: ValidationError, rename: dict[str, str] | None = None) -> str:
    """Pydantic's errors as 'where: what' pairs, with field names as the config spells them."""
    rename = rename or {}
    parts = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"])
        location = rename.get(location, location)
        parts.append(f"{location}: {problem['msg']}" if location else problem["msg"])
    return "; ".join(parts)
