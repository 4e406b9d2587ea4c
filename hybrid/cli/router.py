"""`hybrid router serve`."""

from __future__ import annotations

import argparse

from hybrid import constants
from hybrid.cli.common import add_discovery_argument, positive_float
from hybrid.router import defaults as router_defaults


def cmd_router_serve(args: argparse.Namespace) -> int:
    from hybrid.router.server import RouterConfig, run_event_loop, serve_forever

    config = RouterConfig(
        host=args.host,
        port=args.port,
        discovery=args.discovery,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        realtime_ttft_ms=args.realtime_ttft_ms,
        stall_s=args.stall_s,
        drain_grace_s=args.drain_grace_s,
        workers=args.workers,
        keys=args.keys,
    )
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
    serve.set_defaults(func=cmd_router_serve)
