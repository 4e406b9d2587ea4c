"""The edge tier's `hybrid` subcommands: `edge serve`, `export`, `artifacts serve|hash|keygen|sign`.

Added by the edge plugin (``edge_agent.plugin``). `edge serve` needs the edge extra and `export`
the export extra; serving, hashing and signing artifacts need neither (an artifact server runs no model).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from edge_agent import defaults
from hybrid import constants, tiers
from hybrid.cli.common import (
    add_discovery_argument,
    add_tls_arguments,
    add_tracing_arguments,
    console,
    tls_from_args,
    tracing_settings,
)
from hybrid.telemetry import tracing

# Modules the export extra brings (pyproject.toml), found without importing them.
EXPORT_MODULES = ("torch", "optimum", "onnx")


def cmd_export(args: argparse.Namespace) -> int:
    if not tiers.modules_installed(*EXPORT_MODULES):
        raise tiers.not_installed("the exporter", "export")
    from edge_agent.artifacts.export import export_artifact

    out = console()
    with out.status("exporting") as status:
        folder, manifest = export_artifact(
            model=args.model,
            precision=args.precision,
            out=Path(args.out) if args.out else None,
            force=args.force,
            progress=lambda message: (status.update(message), out.log(message)),
            sign_key=Path(args.sign) if args.sign else None,
        )
    quality = manifest.quality
    out.print(f"[bold green]artifact[/] {folder}  precision {manifest.precision}")
    if quality is not None:
        verdict = "passed" if quality.passed else "FAILED (forced)"
        out.print(
            f"quality: perplexity {quality.perplexity:.2f} vs {quality.reference_perplexity:.2f} full model "
            f"(+{quality.perplexity_increase:.2%}), next-token agreement {quality.next_token_agreement:.1%}, gate {verdict}"
        )
    if args.sign:
        out.print(f"signed with {args.sign}: nodes that trust its .pub accept this artifact")
    print(folder)
    return 0


def cmd_artifacts_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from edge_agent.artifacts.server import ArtifactServer, ServerTls

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together: give both (or neither, to serve on loopback)")
    if args.tls_cert and args.plaintext:
        raise ValueError("--plaintext turns TLS off: give it or --tls-cert/--tls-key, not both")
    tls = ServerTls(Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else None
    server = ArtifactServer(Path(args.dir), args.host, args.port, tls=tls, plaintext=args.plaintext)
    served = server.catalog.all()
    for artifact in served:
        print(
            f"{artifact.sha256}  {artifact.manifest.model} {artifact.manifest.precision}  {server.url(artifact.sha256)}",
            flush=True,
        )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    logging.getLogger("hybrid.artifacts").info(
        "artifact server ready on %s (%d artifacts from %s)", server.address, len(served), args.dir
    )
    stop.wait()
    server.stop()
    return 0


def cmd_artifacts_hash(args: argparse.Namespace) -> int:
    from edge_agent.artifacts.manifest import manifest_sha256, verify_artifact
    from edge_agent.artifacts.signing import TrustedKey

    verify_artifact(Path(args.dir), trusted=TrustedKey.load(args.trust) if args.trust else None)
    print(manifest_sha256(Path(args.dir)))
    return 0


def cmd_artifacts_keygen(args: argparse.Namespace) -> int:
    from edge_agent.artifacts.signing import PASSPHRASE_ENV, generate_key_pair, key_id

    public_path, public_key = generate_key_pair(Path(args.out), overwrite=args.force)
    out = console()
    out.print(f"[bold green]signing key[/] {args.out} (mode 0600; keep it off the nodes)")
    if not os.environ.get(PASSPHRASE_ENV):
        out.print(f"[yellow]not encrypted[/]: set {PASSPHRASE_ENV} when making a key to encrypt it")
    out.print(f"public key {public_path} (key id {key_id(public_key)}): give it to `hybrid-edge install --trust`")
    print(public_path)
    return 0


def cmd_artifacts_sign(args: argparse.Namespace) -> int:
    from edge_agent.artifacts.manifest import manifest_sha256, verify_artifact
    from edge_agent.artifacts.signing import sign_artifact

    folder = Path(args.dir)
    verify_artifact(folder)  # only an intact artifact gets a signature
    print(sign_artifact(folder, Path(args.key)))
    console().print(f"signed {manifest_sha256(folder)}")
    return 0


def cmd_edge_serve(args: argparse.Namespace) -> int:
    from edge_agent.config import EdgeAgentConfig
    from edge_agent.server import serve_forever

    config = EdgeAgentConfig(
        artifact=Path(args.artifact),
        host=args.host,
        port=args.port,
        region=args.region,
        zone=args.zone,
        replica_id=args.replica_id,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queued_requests=args.max_queued,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        discovery=args.discovery,
        cost_per_hour=args.cost_per_hour,
        trust_key=Path(args.trust) if args.trust else None,
        tls=tls_from_args(args),
        num_threads=args.num_threads,
        device=args.device,
    )
    tracing.configure(tracing_settings(args), "hybrid-edge")
    asyncio.run(serve_forever(config))
    return 0


def add_commands(commands: argparse._SubParsersAction, plugin: tiers.TierPlugin) -> None:
    _add_export(commands)
    _add_artifacts(commands)
    edge = commands.add_parser("edge", help="edge agent").add_subparsers(dest="edge_command", required=True)
    serve = edge.add_parser("serve", help="run an edge agent")
    serve.add_argument("--artifact", required=True, help="artifact folder from `hybrid export`")
    serve.add_argument("--host", default=constants.DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=constants.DEFAULT_EDGE_PORT)
    serve.add_argument("--region", default=constants.DEFAULT_REGION)
    serve.add_argument("--zone", default="")
    serve.add_argument("--replica-id", default="")
    serve.add_argument("--max-batch-size", type=int, default=constants.MAX_BATCH_SIZE)
    serve.add_argument("--max-wait-ms", type=float, default=constants.MAX_BATCH_WAIT_MS)
    serve.add_argument("--max-queued", type=int, default=constants.MAX_QUEUED_REQUESTS)
    serve.add_argument("--metrics-port", type=int, default=None)
    serve.add_argument(
        "--metrics-host", default=constants.DEFAULT_HOST, help="address /metrics binds; loopback unless opened"
    )
    add_discovery_argument(serve)
    serve.add_argument("--cost-per-hour", type=float, default=0.0)
    serve.add_argument("--trust", metavar="PUBKEY", help="serve only an artifact this key signed (its .pub)")
    serve.add_argument("--num-threads", type=int, default=0, help="ONNX Runtime threads; 0: the physical cores")
    serve.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: ONNX Runtime's CUDA provider where the edge-gpu extra is installed and a GPU answers, else the CPU",
    )
    add_tracing_arguments(serve)
    add_tls_arguments(serve)
    serve.set_defaults(func=tiers.requiring(plugin, cmd_edge_serve))


def _add_export(commands: argparse._SubParsersAction) -> None:
    from edge_agent.artifacts.export import PRECISION_CHOICES

    export = commands.add_parser("export", help="build a quality-gated edge artifact")
    export.add_argument("--model", default=constants.DEFAULT_MODEL, help="model name or local Hugging Face folder")
    export.add_argument(
        "--precision", default="auto", choices=PRECISION_CHOICES, help="auto picks the fastest that passes the gate"
    )
    export.add_argument("--out", help="folder to place the artifact in (it is also cached by content hash)")
    export.add_argument(
        "--force", action="store_true", help="ship a precision that fails the quality gate, labelled so"
    )
    export.add_argument(
        "--sign", metavar="KEYFILE", help="sign the manifest with this ed25519 key (`hybrid artifacts keygen`)"
    )
    export.set_defaults(func=cmd_export)


def _add_artifacts(commands: argparse._SubParsersAction) -> None:
    artifacts = commands.add_parser("artifacts", help="serve, hash and sign edge artifacts").add_subparsers(
        dest="artifacts_command", required=True
    )
    serve = artifacts.add_parser(
        "serve", help="serve edge artifacts over HTTP at /artifacts/<manifest sha256> (what hybrid-edge fetches)"
    )
    serve.add_argument("dir", help="an artifact folder, or a folder of them")
    serve.add_argument(
        "--host", default=constants.DEFAULT_HOST, help="0.0.0.0 serves other machines (needs TLS or --plaintext)"
    )
    serve.add_argument("--port", type=int, default=defaults.DEFAULT_ARTIFACT_PORT, help="0 picks one")
    serve.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain): serve HTTPS")
    serve.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    serve.add_argument(
        "--plaintext", action="store_true", help="serve plain HTTP beyond loopback (without TLS only 127.0.0.1 binds)"
    )
    serve.set_defaults(func=cmd_artifacts_serve)
    hash_ = artifacts.add_parser(
        "hash", help="verify an artifact and print its manifest's sha256, the hash nodes pin with --sha256"
    )
    hash_.add_argument("dir", help="the artifact folder")
    hash_.add_argument("--trust", metavar="PUBKEY", help="also check that this public key signed it")
    hash_.set_defaults(func=cmd_artifacts_hash)
    keygen = artifacts.add_parser("keygen", help="make an ed25519 key pair to sign artifacts: OUT and OUT.pub")
    keygen.add_argument("out", help="where the private key goes (mode 0600); the public key goes to OUT.pub")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.set_defaults(func=cmd_artifacts_keygen)
    sign = artifacts.add_parser("sign", help="sign an artifact's manifest (what `hybrid export --sign` does)")
    sign.add_argument("dir", help="the artifact folder")
    sign.add_argument("--key", required=True, metavar="KEYFILE", help="the private key from `hybrid artifacts keygen`")
    sign.set_defaults(func=cmd_artifacts_sign)
