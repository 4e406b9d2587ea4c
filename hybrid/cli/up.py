"""`hybrid up`: the embedded default on one machine: edge agent, cloud tier on local Ray, router.

The tiers start through their plugins (``hybrid.tiers``); discovery is Consul when CONSUL_HTTP_ADDR
is set, else a static file in the state folder.

Every gRPC hop speaks mutual TLS unless ``--plaintext``: on the certificate given (``--tls-cert``, ``--tls-key``,
``--tls-ca`` or their environment variables: a server leaf, which serves as the stack's client certificate too), or
else on a CA and certificates made at start in a private temporary folder (its CA key deleted at once, nothing
else can be signed with it) and removed at stop.
A tier whose servers cannot serve TLS lists its replica tiers in ``plaintext_tiers`` once started; the router
reaches those without TLS. The cloud tier lists none here: its replicas serve mutual TLS on ports of their own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path

from hybrid import constants, tiers
from hybrid.cli.client import add_priority_argument
from hybrid.cli.common import add_tls_arguments, positive_float, print_chunks, tls_from_args
from hybrid.cli.common import console as make_console
from hybrid.router import defaults as router_defaults
from hybrid.security import certs
from hybrid.security.tls import TlsSettings, is_loopback


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
        server_tls, client_tls, made_here = _local_tls(args, stoppers)
        if discovery == "consul" and made_here:
            console.print(
                "[yellow]Consul checks each replica over TLS, and its agent holds no certificate of the CA made "
                "just now: the checks will fail. Give --tls-cert/--tls-key/--tls-ca of a CA the Consul agent has "
                "a certificate of, or --plaintext.[/]"
            )
        for plugin in needed:
            stack = tiers.LocalStack(
                state, args.host, args.region, discovery, ports[plugin.name], console, tls=server_tls
            )
            stoppers.append(plugin.start_local(stack))
        plaintext_tiers = [tier for plugin in needed for tier in getattr(plugin, "plaintext_tiers", ())]
        router_address = _start_router(args, discovery, console, stoppers, server_tls, client_tls, plaintext_tiers)
        if args.prompt:
            _answer(router_address, args, client_tls)
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


def _local_tls(args: argparse.Namespace, stoppers: list) -> tuple[TlsSettings, TlsSettings, bool]:
    """The servers' and the callers' TLS settings, and whether they were made here: those given, else certificates
    made now in a private temporary folder, removed at stop; with --plaintext none (and plaintext allowed beyond
    loopback, since it was asked for)."""
    given = tls_from_args(args)
    if given.plaintext:
        plain = TlsSettings(plaintext=not is_loopback(args.host))
        return plain, plain, False
    if given.enabled:
        given.check_server_files()
        return given, given, False
    folder = Path(tempfile.mkdtemp(prefix="hybrid-up-tls-"))  # mode 0700
    stoppers.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    every_interface = args.host in ("", "0.0.0.0", "::", "[::]")
    extra_names = [] if is_loopback(args.host) else [socket.gethostname()] if every_interface else [args.host]
    server, client = certs.init_ca_folder(folder, sans=extra_names, force=True)
    (folder / certs.CA_KEY_FILE).unlink()  # nothing more is signed for this stack
    ca = folder / certs.CA_CERT_FILE
    made = TlsSettings(cert=server.cert, key=server.key, ca=ca), TlsSettings(cert=client.cert, key=client.key, ca=ca)
    return *made, True


def _start_router(
    args: argparse.Namespace,
    discovery: str,
    console,
    stoppers: list,
    tls: TlsSettings,
    client_tls: TlsSettings,
    plaintext_tiers: list[str],
) -> str:
    from hybrid.router.server import BackgroundRouter, RouterConfig

    with console.status("starting the router"):
        router = BackgroundRouter(
            RouterConfig(
                host=args.host,
                port=args.router_port,
                discovery=discovery,
                http_port=args.http_port,
                realtime_ttft_ms=args.realtime_ttft_ms,
                tls=tls,
                plaintext_tiers=plaintext_tiers,
            )
        )
    stoppers.append(router.stop)
    console.print(f"[bold green]router[/]        {router.address}  (OpenAI front {router.http_url}/v1)")
    console.print(
        f"[bold green]status[/]        {router.http_url}/status  (hybrid status --router {router.http_address})"
    )
    console.print(f"[bold green]discovery[/]     {discovery}")
    flags = ""
    if client_tls.cert is not None:
        flags = f" --tls-cert {client_tls.cert} --tls-key {client_tls.key} --tls-ca {client_tls.ca}"
        console.print(f"[bold green]mTLS[/]          certificates in {client_tls.ca.parent} (removed at stop)")
        console.print(f"try: curl --cacert {client_tls.ca} {router.http_url}/v1/models")
    console.print(f'try: hybrid generate "Hello" --target {router.address} --priority realtime{flags}')
    print(f"stack ready on {router.address}", flush=True)
    return router.address


def _answer(address: str, args: argparse.Namespace, tls: TlsSettings) -> None:
    from hybrid.client import HybridClient

    with HybridClient(address, timeout_s=600, tls=tls) as client:
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
    add_tls_arguments(up)  # without them every hop speaks mutual TLS on certificates made at start
    up.set_defaults(func=cmd_up)
