"""`hybrid up`: the embedded default on one machine: edge agent, cloud tier on local Ray, router.

The tiers start through their plugins (``hybrid.tiers``); discovery is Consul when CONSUL_HTTP_ADDR
is set, else a static file in the state folder.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from hybrid import constants, tiers
from hybrid.cli.client import add_priority_argument
from hybrid.cli.common import console as make_console
from hybrid.cli.common import positive_float, print_chunks
from hybrid.router import defaults as router_defaults


def cmd_up(args: argparse.Namespace) -> int:
    # Every tier it needs is checked before anything starts (an export takes minutes).
    needed = [tiers.require("edge")]
    if not args.no_cloud:
        needed.append(tiers.require("cloud", alternative="pass --no-cloud for the edge tier and the router alone"))
    console = make_console()
    state = Path(args.state_dir)
    # Consul when CONSUL_HTTP_ADDR is set, else the static file.
    discovery = "consul" if os.environ.get("CONSUL_HTTP_ADDR") else f"static:{state / 'discovery.yaml'}"
    ports = {"edge": args.edge_port, "cloud": args.cloud_port}
    stoppers: list = []
    _interrupt_on_signals()  # from the first moment: Ctrl-C while tiers start or the prompt is answered stops cleanly
    try:
        for plugin in needed:
            stack = tiers.LocalStack(state, args.host, args.region, discovery, ports[plugin.name], console)
            stoppers.append(plugin.start_local(stack))
        router_address = _start_router(args, discovery, console, stoppers)
        if args.prompt:
            _answer(router_address, args)
        if not args.once:
            console.print("serving; Ctrl-C stops everything")
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        console.print("stopping")
        for stopper in reversed(stoppers):
            stopper()
    return 0


def _interrupt_on_signals() -> None:
    def interrupt(*_) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background leaves SIGINT ignored; SIGTERM too.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)


def _start_router(args: argparse.Namespace, discovery: str, console, stoppers: list) -> str:
    from hybrid.router.server import BackgroundRouter, RouterConfig

    with console.status("starting the router"):
        router = BackgroundRouter(
            RouterConfig(
                host=args.host,
                port=args.router_port,
                discovery=discovery,
                http_port=args.http_port,
                realtime_ttft_ms=args.realtime_ttft_ms,
            )
        )
    stoppers.append(router.stop)
    console.print(f"[bold green]router[/]        {router.address}  (OpenAI front http://{router.http_address}/v1)")
    status_page = f"http://{router.http_address}/status"
    console.print(f"[bold green]status[/]        {status_page}  (hybrid status --router {router.http_address})")
    console.print(f"[bold green]discovery[/]     {discovery}")
    console.print(f'try: hybrid generate "Hello" --target {router.address} --priority realtime')
    print(f"stack ready on {router.address}", flush=True)
    return router.address


def _answer(address: str, args: argparse.Namespace) -> None:
    from hybrid.client import HybridClient

    with HybridClient(address, timeout_s=600) as client:
        messages = [{"role": "user", "content": args.prompt}]
        print_chunks(
            client.stream(messages=messages, max_new_tokens=args.max_new_tokens, priority=args.priority), False
        )


def add_commands(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("up", help="run the embedded default stack on this machine")
    up.add_argument("--state-dir", default=str(constants.CACHE_DIR / "up"))
    up.add_argument("--host", default=constants.DEFAULT_HOST)
    up.add_argument("--edge-port", type=int, default=constants.DEFAULT_EDGE_PORT)
    up.add_argument("--router-port", type=int, default=constants.DEFAULT_ROUTER_PORT)
    up.add_argument("--cloud-port", type=int, default=constants.DEFAULT_CLOUD_GRPC_PORT, help="Serve's gRPC proxy")
    up.add_argument("--http-port", type=int, default=constants.DEFAULT_ROUTER_HTTP_PORT, help="OpenAI front")
    up.add_argument("--no-cloud", action="store_true", help="edge agent and router only (no Ray)")
    add_priority_argument(up)
    up.add_argument("--region", default=constants.DEFAULT_REGION)
    up.add_argument(
        "--realtime-ttft-ms",
        type=positive_float,
        default=router_defaults.ROUTING_REALTIME_TTFT_MS,
        help="the router's first-token target of REALTIME requests (as `hybrid router serve` has it)",
    )
    up.add_argument("--prompt", default="", help="once the stack is up, answer this through it")
    up.add_argument("--max-new-tokens", type=int, default=64)
    up.add_argument("--once", action="store_true", help="stop after answering --prompt")
    up.set_defaults(func=cmd_up)
