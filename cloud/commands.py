"""The cloud tier's `hybrid` subcommands: `cloud serve` (needs the cloud extra) and `cloud config`.

Added by the cloud plugin (``cloud.plugin``). `cloud config` only writes text, so it runs
without Ray: a Serve config can be made on a machine that never runs the tier.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cloud import defaults
from hybrid import constants, tiers
from hybrid.cli.common import add_discovery_argument


def cloud_settings(args: argparse.Namespace):
    """The replica and deployment settings the flags of `cloud serve` and `cloud config` give."""
    from cloud.config import DeploymentSettings, ReplicaSettings

    settings = ReplicaSettings(
        tier=args.tier,
        region=args.region,
        zone=args.zone,
        model=args.model,
        precision=args.precision,
        device=args.device,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queued_requests=args.max_queued,
        replica_port=args.replica_port,
    )
    deployment = DeploymentSettings(
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests or settings.max_batch_size / 2,
        max_ongoing_requests=args.max_ongoing_requests or settings.max_batch_size,
        max_queued_requests=args.serve_max_queued,
        num_gpus=args.num_gpus,
        num_cpus=args.num_cpus,
    )
    return settings, deployment


def cmd_cloud_serve(args: argparse.Namespace) -> int:
    from cloud.server import CloudTier, serve_forever

    settings, deployment = cloud_settings(args)
    tier = CloudTier(
        settings,
        deployment,
        port=args.port,
        discovery=args.discovery,
        cost_per_hour=args.cost_per_hour,
        advertise_host=args.advertise_host,
        app_name=args.app_name,
        num_cpus=args.ray_cpus,
        direct=args.direct,
    )
    serve_forever(tier)
    return 0


def cmd_cloud_config(args: argparse.Namespace) -> int:
    from cloud.serve_config import dump_serve_config, serve_config

    settings, deployment = cloud_settings(args)
    settings = type(settings).model_validate(
        {**settings.model_dump(), "discovery": args.discovery, "cost_per_hour": args.cost_per_hour}
    )
    if deployment.num_gpus is None:
        raise ValueError("say how many GPUs each replica gets: --num-gpus 1 for a GPU tier, 0 for CPU")
    document = serve_config(
        settings, deployment, args.app_name or settings.tier, args.port, router_prometheus=args.router_prometheus
    )
    text = dump_serve_config(document)
    if args.out:
        Path(args.out).write_text(text)
        print(args.out)
    else:
        print(text, end="")
    return 0


def add_commands(commands: argparse._SubParsersAction, plugin: tiers.TierPlugin) -> None:
    cloud = commands.add_parser("cloud", help="cloud tier on Ray Serve").add_subparsers(
        dest="cloud_command", required=True
    )
    serve = cloud.add_parser("serve", help="run the cloud tier on this machine's Ray (GPU when present)")
    config = cloud.add_parser("config", help="write the Serve config file for `serve deploy` / KubeRay")
    for sub in (serve, config):
        _add_tier_arguments(sub)
    add_discovery_argument(serve)
    serve.add_argument("--cost-per-hour", type=float, default=0.0, help="per replica")
    serve.add_argument("--advertise-host", default=constants.DEFAULT_HOST, help="address others reach it at")
    serve.add_argument(
        "--direct",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each replica serves on a gRPC port of its own node (Serve's direct ingress) and registers there, "
        "one record per replica; --no-direct registers the tier once, at Serve's gRPC proxy",
    )
    serve.add_argument("--ray-cpus", type=int, default=None, help="CPUs of a local Ray cluster started here")
    serve.set_defaults(func=tiers.requiring(plugin, cmd_cloud_serve))
    config.add_argument(
        "--discovery",
        default="none",
        help="where each replica registers itself on its own port, e.g. consul (its node's agent); "
        "needs RAY_SERVE_ENABLE_DIRECT_INGRESS=1 in the environment of every node of the cluster",
    )
    config.add_argument("--cost-per-hour", type=float, default=0.0, help="per replica, registered with it")
    config.add_argument("--out", default="", help="file to write; stdout when empty")
    config.add_argument(
        "--router-prometheus",
        default="",
        metavar="URL",
        help="the Prometheus that scrapes the router: Serve then scales the tier on the router's scaling signal "
        "(hybrid_router_tier_desired_replicas) as well as on its own ongoing requests",
    )
    config.set_defaults(func=cmd_cloud_config)


def _add_tier_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--port", type=int, default=constants.DEFAULT_CLOUD_GRPC_PORT, help="gRPC proxy port")
    sub.add_argument("--tier", default="private", choices=["private", "public"])
    sub.add_argument("--region", default=constants.DEFAULT_REGION)
    sub.add_argument("--zone", default="")
    sub.add_argument("--model", default=constants.DEFAULT_MODEL, help="model name or local Hugging Face folder")
    sub.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    sub.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    sub.add_argument("--max-batch-size", type=int, default=constants.MAX_BATCH_SIZE)
    sub.add_argument("--max-wait-ms", type=float, default=constants.MAX_BATCH_WAIT_MS)
    sub.add_argument("--max-queued", type=int, default=constants.MAX_QUEUED_REQUESTS, help="per replica")
    sub.add_argument("--min-replicas", type=int, default=1)
    sub.add_argument("--max-replicas", type=int, default=1)
    sub.add_argument("--target-ongoing-requests", type=float, default=0, help="0: half the batch size")
    sub.add_argument("--max-ongoing-requests", type=int, default=0, help="0: the batch size")
    sub.add_argument(
        "--serve-max-queued",
        type=int,
        default=defaults.CLOUD_SERVE_MAX_QUEUED_REQUESTS,
        help="requests Serve queues before backpressure",
    )
    sub.add_argument("--num-gpus", type=float, default=None, help="per replica; default: 1 where Ray sees GPUs")
    sub.add_argument("--num-cpus", type=float, default=1, help="per replica")
    sub.add_argument("--app-name", default="", help="Serve application name; default: the tier")
    sub.add_argument(
        "--replica-port",
        type=int,
        default=None,
        help="each replica also opens this gRPC port itself (0: any free one), with the node's mutual TLS "
        "(HYBRID_TLS_*), and registers it in place of Serve's plaintext direct-ingress port",
    )
