"""`hybrid router serve`."""

from __future__ import annotations

import argparse

from hybrid import constants
from hybrid.cli.common import (
    add_discovery_argument,
    add_tls_arguments,
    add_tracing_arguments,
    non_negative_float,
    positive_float,
    positive_share,
    share,
    tls_from_args,
    tracing_settings,
)
from hybrid.protocol import Tier
from hybrid.router import defaults as router_defaults


def cmd_router_serve(args: argparse.Namespace) -> int:
    from hybrid.router.server import RouterConfig, run_event_loop, serve_forever

    config = RouterConfig(
        host=args.host,
        port=args.port,
        discovery=args.discovery,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        tls=tls_from_args(args),
        http_tls_cert=args.http_tls_cert,
        http_tls_key=args.http_tls_key,
        plaintext_tiers=args.plaintext_tier,
        realtime_ttft_ms=args.realtime_ttft_ms,
        stall_s=args.stall_s,
        drain_grace_s=args.drain_grace_s,
        workers=args.workers,
        request_log=args.request_log,
        request_log_sample=args.request_log_sample,
        tracing=tracing_settings(args),
        scaling_horizon_s=args.scaling_horizon_s,
        scaling_target_utilization=args.scaling_target_utilization,
        keys=args.keys,
    )
    config.check_exposure()  # before any worker starts: each would fail the same way
    if config.workers > 1:
        from hybrid.router.workers import serve_workers

        return serve_workers(config)
    run_event_loop(serve_forever(config))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    router = commands.add_parser("router", help="the router").add_subparsers(dest="router_command", required=True)
    serve = router.add_parser("serve", help="run the router")
    serve.add_argument("--host", default=constants.DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=constants.DEFAULT_ROUTER_PORT)
    add_discovery_argument(serve, also="; the router needs replicas, so not 'none'")
    serve.add_argument(
        "--http-port", type=int, default=None, help="serve the OpenAI-compatible HTTP front on this port"
    )
    serve.add_argument(
        "--metrics-port", type=int, default=None, help="Prometheus /metrics (with --workers > 1: of every worker)"
    )
    serve.add_argument(
        "--metrics-host",
        default=constants.DEFAULT_HOST,
        help="address /metrics binds; loopback unless opened on purpose (e.g. 0.0.0.0 for a scraper elsewhere)",
    )
    add_tls_arguments(serve)
    serve.add_argument("--http-tls-cert", metavar="FILE", help="the HTTP front's PEM certificate (default --tls-cert)")
    serve.add_argument("--http-tls-key", metavar="FILE", help="its PEM key (default --tls-key)")
    serve.add_argument(
        "--plaintext-tier",
        action="append",
        default=[],
        choices=[tier.name.lower() for tier in Tier],
        help="reach this tier's replicas without TLS although the router has it (repeat it): for a tier whose "
        "servers cannot serve TLS, such as Ray Serve's gRPC (private, public)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="router processes sharing the ports (SO_REUSEPORT; the kernel spreads connections over them), each the "
        "whole router, under a parent that restarts one that dies and stops all on SIGINT/SIGTERM; 1 (default) "
        "serves in this process. Above 1, --port and --http-port must be fixed (0 is refused)",
    )
    serve.add_argument(
        "--keys",
        default=None,
        help="key file of the API keys callers must present (`hybrid keys add` makes it), read again when it "
        "changes; without it anyone who reaches the router is served (a warning says so off loopback)",
    )
    serve.add_argument(
        "--realtime-ttft-ms",
        type=positive_float,
        default=router_defaults.ROUTING_REALTIME_TTFT_MS,
        help="first-token target of REALTIME requests: the nearest tier expected to meet it serves them",
    )
    serve.add_argument(
        "--stall-s",
        type=float,
        default=router_defaults.ROUTER_STALL_S,
        help="a replica with calls open that sends nothing this long is frozen: ejected, its calls sent elsewhere",
    )
    serve.add_argument(
        "--drain-grace-s",
        type=float,
        default=constants.DRAIN_GRACE_S,
        help="time the answers in flight get to finish when the router stops or their replica leaves discovery",
    )
    serve.add_argument(
        "--request-log",
        default=None,
        metavar="PATH",
        help="write one JSON line per request (id, class, tier, replica, reason, TTFT, tokens, outcome) to this "
        "file, reopened when logrotate moves it, or to stderr with '-'; off by default",
    )
    serve.add_argument(
        "--request-log-sample",
        type=share,
        default=1.0,
        help="share (0..1) of the requests, chosen at random, that the request log keeps (default 1: all)",
    )
    add_tracing_arguments(serve)
    serve.add_argument(
        "--scaling-horizon-s",
        type=non_negative_float,
        default=router_defaults.SCALING_HORIZON_S,
        help="how far ahead the scaling signal (hybrid_router_tier_desired_replicas) forecasts arrivals: about the "
        "time a new replica takes to start; 0 sizes the tiers for the rate now",
    )
    serve.add_argument(
        "--scaling-target-utilization",
        type=positive_share,
        default=router_defaults.SCALING_TARGET_UTILIZATION,
        help="share of a replica's slots the scaling signal plans to fill, in (0, 1]",
    )
    serve.set_defaults(func=cmd_router_serve)
