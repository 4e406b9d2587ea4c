"""`hybrid-edge`: the installer, updater and agent of a regional edge node.

hybrid-edge install --artifact URL --sha256 H [--trust PUBKEY] --region R [--router HOST:PORT] [--discovery SPEC]
                    [--tls-cert FILE --tls-key FILE [--tls-ca FILE] | --plaintext] ...
hybrid-edge update  --artifact URL --sha256 H [--trust PUBKEY] [--config FILE]
hybrid-edge status  [--config FILE] [--json]
hybrid-edge run     [--config FILE]          (what the systemd unit runs)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from pathlib import Path

from edge_agent import defaults
from edge_agent.artifacts.store import Progress
from hybrid import constants
from hybrid.cli.common import add_tls_arguments, tls_from_args
from hybrid.discovery import DISCOVERY_SPEC_HELP
from hybrid.errors import ArtifactError, HybridError


def _console():
    from rich.console import Console

    # No wrapping: cloud-init and journald keep whole lines.
    return Console(stderr=True, log_path=False, soft_wrap=True)


class RichProgress(Progress):
    """Download bars, one per file, with the steps logged above them."""

    def __init__(self, console):
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
        from rich.progress import Progress as Bars

        self.bars = Bars(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console
        )
        self.tasks: dict[str, int] = {}

    def say(self, message: str) -> None:
        self.bars.console.log(message)

    def start(self, name: str, total_bytes: int | None) -> None:
        self.tasks[name] = self.bars.add_task(name, total=total_bytes)

    def advance(self, name: str, done_bytes: int) -> None:
        self.bars.update(self.tasks[name], completed=done_bytes)


def default_advertise_host(host: str) -> str:
    """The address routers reach this node at, when it binds every interface: the one its default route uses."""
    if host not in ("0.0.0.0", "::"):
        return ""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect picks the route and sends nothing
            return probe.getsockname()[0]
    except OSError:
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        raise ValueError("could not tell this node's address: pass --advertise-host ADDRESS") from None


def _metrics_port(value: str) -> int | None:
    return None if value.lower() in ("none", "off", "") else int(value)


def _install_request(args: argparse.Namespace):
    """The InstallRequest the flags describe; the TLS flags decide where the agent binds."""
    from edge_agent.node.config import NodeConfig, UpdateSettings
    from edge_agent.node.install import InstallRequest, PackageSource
    from edge_agent.node.service import AgentTls, agent_host

    tls = AgentTls.from_flags(args.tls_cert, args.tls_key, args.tls_ca)
    if tls is not None and args.plaintext:
        raise ValueError("--plaintext turns TLS off: give it or the --tls-* files, not both")
    host = agent_host(args.host, tls, args.plaintext)
    node = NodeConfig(
        prefix=Path(args.prefix).absolute(),
        region=args.region,
        zone=args.zone,
        router=args.router,
        discovery=args.discovery,
        host=host,
        port=args.port,
        advertise_host=args.advertise_host if args.advertise_host is not None else default_advertise_host(host),
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        tls=tls_from_args(args),
        max_batch_size=args.max_batch_size,
        cost_per_hour=args.cost_per_hour,
        replica_id=args.replica_id,
        num_threads=args.num_threads,
        device=args.device,
        update=UpdateSettings(probation_s=args.probation_s, min_speed_ratio=args.min_speed_ratio),
    )
    return InstallRequest(
        artifact=args.artifact,
        sha256=args.sha256,
        node=node,
        config_path=Path(args.config_dir).absolute() / defaults.EDGE_CONFIG_NAME,
        package=PackageSource(
            wheel=Path(args.wheel) if args.wheel else None,
            package=args.package,
            index_url=args.index_url,
            find_links=args.find_links,
            reuse_site_packages=args.reuse_site_packages,
            python=args.python,
        ),
        systemd=False if args.no_systemd else None,
        start=not args.no_start,
        trust=Path(args.trust).absolute() if args.trust else None,
        tls=tls,
        plaintext=args.plaintext,
        service_user=args.user,
    )


def cmd_install(args: argparse.Namespace) -> int:
    from edge_agent.node.install import install_node

    console = _console()
    request = _install_request(args)
    progress = RichProgress(console)
    try:
        with progress.bars:
            report = install_node(request, progress, say=progress.say)
    except ArtifactError:
        console.print(
            "[bold red]refused[/]: the artifact does not match its pin or its signature; nothing was installed or "
            "changed"
        )
        raise
    for step in report.steps:
        console.print(f"{step.name:<9} [bold]{step.outcome:<9}[/] {step.detail}")
    if not report.changed:
        console.print("[green]nothing to do[/]: this node is installed as asked")
    if not report.systemd:
        # stdout carries just the command, for scripts.
        import shlex

        print(shlex.join(report.run_command))
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from edge_agent.node.config import read_node_config
    from edge_agent.node.update import update_node

    console = _console()
    node = read_node_config(Path(args.config))
    progress = RichProgress(console)
    with progress.bars:
        record = update_node(
            node,
            args.artifact,
            args.sha256,
            trust=Path(args.trust) if args.trust else None,
            min_speed_ratio=args.min_speed_ratio,
            probation_s=args.probation_s,
            wait=not args.no_wait,
            progress=progress,
            say=progress.say,
        )
    if record is None:
        console.print("[green]nothing to do[/]: this node serves that artifact already")
        return 0
    colour = {"switched": "green", "switching": "yellow", "probation": "yellow"}.get(record.outcome, "red")
    console.print(
        f"[bold {colour}]{record.outcome.replace('_', ' ')}[/] {record.to_sha256[:12]} {record.to_precision}: "
        f"{record.reason or 'the agent is switching; `hybrid-edge status` shows the outcome'}"
    )
    print(json.dumps(record.model_dump(mode="json")))
    return 0 if record.outcome in ("switched", "switching", "probation") else 1


def cmd_status(args: argparse.Namespace) -> int:
    from edge_agent.node.config import read_node_config
    from edge_agent.node.status import healthy, node_status, render_status

    status = node_status(read_node_config(Path(args.config)))
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print("\n".join(render_status(status)))
    return 0 if healthy(status) else 1


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.node.agent import NodeAgent
    from edge_agent.node.config import read_node_config
    from edge_agent.node.service import read_environment
    from hybrid.serving.background import serve_until_signalled
    from hybrid.telemetry import tracing

    node = read_node_config(Path(args.config))
    # What the unit's EnvironmentFile= gives the agent, for an agent started by hand; the environment wins.
    for name, value in read_environment(Path(args.config).parent / defaults.EDGE_ENV_NAME).items():
        os.environ.setdefault(name, value)
    # The node's service unit turns tracing on through the standard OTEL_* environment.
    tracing.configure(tracing.TracingSettings(), "hybrid-edge")

    async def run() -> None:
        await serve_until_signalled(NodeAgent(node), freeze_start_heap=True)

    asyncio.run(run())
    return 0


def _add_artifact_arguments(install: argparse.ArgumentParser) -> None:
    """What to install: the artifact and its pin."""
    artifact = install.add_argument_group("artifact")
    artifact.add_argument(
        "--artifact", required=True, help="http(s) URL of an artifact folder (hybrid artifacts serve) or tarball, "
        "or a local folder or tarball"
    )  # fmt: skip
    artifact.add_argument(
        "--sha256", required=True, help="sha256 of the artifact's manifest.json (`hybrid artifacts hash DIR`)"
    )
    artifact.add_argument(
        "--trust",
        metavar="PUBKEY",
        help="public key (`hybrid artifacts keygen`'s .pub) that must have signed the artifact; kept in the config "
        "folder, and the agent refuses any artifact it did not sign",
    )


def _add_agent_arguments(install: argparse.ArgumentParser) -> None:
    """The settings install writes to agent.yaml."""
    agent = install.add_argument_group("agent (written to agent.yaml)")
    agent.add_argument("--region", default=constants.DEFAULT_REGION, help="region as the router sees it")
    agent.add_argument("--zone", default="")
    agent.add_argument("--router", default="", help="the router's gRPC address HOST:PORT (probed for status)")
    agent.add_argument(
        "--discovery", default="consul", help=f"where the agent registers: {DISCOVERY_SPEC_HELP}; default consul"
    )
    agent.add_argument(
        "--host",
        default=None,
        help=f"address the agent binds; default {defaults.EDGE_NODE_TLS_HOST} with TLS, {defaults.EDGE_NODE_HOST} "
        "without (other addresses without TLS need --plaintext)",
    )
    agent.add_argument("--port", type=int, default=constants.DEFAULT_EDGE_PORT, help="gRPC port; 0 picks one")
    agent.add_argument(
        "--advertise-host", default=None, help="address routers reach it at; default: this node's primary address"
    )
    agent.add_argument(
        "--metrics-port", type=_metrics_port, default=defaults.EDGE_NODE_METRICS_PORT, help="Prometheus; none: off"
    )
    agent.add_argument(
        "--metrics-host", default=constants.DEFAULT_HOST, help="address /metrics binds; loopback unless opened"
    )
    add_tls_arguments(install)
    agent.add_argument("--max-batch-size", type=int, default=constants.MAX_BATCH_SIZE, help="capacity")
    agent.add_argument("--cost-per-hour", type=float, default=0.0)
    agent.add_argument("--replica-id", default="", help="default: edge-REGION-HOSTNAME-PORT")
    agent.add_argument("--num-threads", type=int, default=0, help="ONNX Runtime threads; 0: the physical cores")
    agent.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="cuda installs the edge-gpu extra (onnxruntime-gpu) and refuses to run on the CPU",
    )
    agent.add_argument("--probation-s", type=float, default=defaults.EDGE_PROBATION_S, help="of every update")
    agent.add_argument("--min-speed-ratio", type=float, default=defaults.EDGE_GATE_MIN_SPEED_RATIO)


def _add_where_arguments(install: argparse.ArgumentParser) -> None:
    """Where the node goes and whether systemd runs it."""
    where = install.add_argument_group("where")
    where.add_argument("--prefix", default=str(defaults.EDGE_PREFIX), help="venv, artifacts and state")
    where.add_argument("--config-dir", default=str(defaults.EDGE_CONFIG_DIR), help="where agent.yaml goes")
    where.add_argument("--no-systemd", action="store_true", help="no unit: print the command that runs the agent")
    where.add_argument("--no-start", action="store_true", help="install and enable the unit, do not start it")
    where.add_argument(
        "--user", default=defaults.EDGE_SERVICE_USER, help="unprivileged system user the unit runs the agent as"
    )


def _add_package_arguments(install: argparse.ArgumentParser) -> None:
    """Where the hybrid-inference package comes from."""
    package = install.add_argument_group("package")
    source = package.add_mutually_exclusive_group()
    source.add_argument("--wheel", help="install hybrid-inference from this wheel file")
    source.add_argument("--package", help="pip requirement to install, e.g. 'hybrid-inference[edge]==0.1.0'")
    package.add_argument("--index-url", help="package index to install from")
    package.add_argument("--find-links", action="append", default=[], help="folder of wheels (implies --no-index)")
    package.add_argument(
        "--reuse-site-packages",
        action="store_true",
        help="for air-gapped nodes and tests: the new venv sees this Python's site-packages, so every dependency "
        "resolves from there without an index",
    )
    package.add_argument("--python", default=sys.executable, help="interpreter the venv is made with")


def _add_install(commands: argparse._SubParsersAction) -> None:
    install = commands.add_parser(
        "install",
        help="set up this node: venv, verified artifact, agent.yaml, systemd unit (idempotent)",
        description="Sets up an edge node. Running it again with the same flags changes nothing; a node that "
        "serves another artifact is changed with `hybrid-edge update`, which gates it.",
    )
    _add_artifact_arguments(install)
    _add_agent_arguments(install)
    _add_where_arguments(install)
    _add_package_arguments(install)
    install.set_defaults(func=cmd_install)


def _add_update(commands: argparse._SubParsersAction, default_config: str) -> None:
    update = commands.add_parser(
        "update", help="switch to a new artifact: fetch, health gate, atomic switch, rollback on failure"
    )
    update.add_argument("--artifact", required=True, help="URL or path, as for install")
    update.add_argument("--sha256", required=True, help="sha256 of the new artifact's manifest.json")
    update.add_argument(
        "--trust", metavar="PUBKEY", help="public key that must have signed it; default: the node's (agent.yaml)"
    )
    update.add_argument("--config", default=default_config)
    update.add_argument("--min-speed-ratio", type=float, default=None, help="default: update.min_speed_ratio")
    update.add_argument("--probation-s", type=float, default=None, help="default: update.probation_s")
    update.add_argument("--no-wait", action="store_true", help="return once the agent was told to switch")
    update.set_defaults(func=cmd_update)


def _add_status(commands: argparse._SubParsersAction, default_config: str) -> None:
    status = commands.add_parser("status", help="version, health, throughput and the last update's outcome")
    status.add_argument("--config", default=default_config)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)


def _add_run(commands: argparse._SubParsersAction, default_config: str) -> None:
    run = commands.add_parser("run", help="run the agent of this node (the systemd unit's command)")
    run.add_argument("--config", default=default_config)
    run.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybrid-edge", description="Install, update and run a Hybrid edge node.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    default_config = str(defaults.EDGE_CONFIG_DIR / defaults.EDGE_CONFIG_NAME)
    _add_install(commands)
    _add_update(commands, default_config)
    _add_status(commands, default_config)
    _add_run(commands, default_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        return args.func(args)
    except (HybridError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
