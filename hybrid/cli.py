"""The `hybrid` command line (DESIGN "Command line")."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from hybrid import constants
from hybrid.errors import HybridError


def _console():
    from rich.console import Console

    return Console(stderr=True)


def cmd_export(args: argparse.Namespace) -> int:
    from hybrid.models.export import export_artifact

    console = _console()
    with console.status("exporting") as status:
        folder, manifest = export_artifact(
            model=args.model,
            precision=args.precision,
            out=Path(args.out) if args.out else None,
            force=args.force,
            progress=lambda message: (status.update(message), console.log(message)),
        )
    quality = manifest.quality
    console.print(f"[bold green]artifact[/] {folder}  precision {manifest.precision}")
    if quality is not None:
        verdict = "passed" if quality.passed else "FAILED (forced)"
        console.print(
            f"quality: perplexity {quality.perplexity:.2f} vs {quality.reference_perplexity:.2f} full model "
            f"(+{quality.perplexity_increase:.2%}), next-token agreement {quality.next_token_agreement:.1%}, gate {verdict}"
        )
    print(folder)
    return 0


def _edge_config(args: argparse.Namespace):
    from edge_agent.config import EdgeAgentConfig

    return EdgeAgentConfig(
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
        discovery=args.discovery,
        cost_per_hour=args.cost_per_hour,
    )


def cmd_edge_serve(args: argparse.Namespace) -> int:
    from edge_agent.server import serve_forever

    asyncio.run(serve_forever(_edge_config(args)))
    return 0


def _print_chunks(chunks, as_json: bool) -> None:
    from google.protobuf.json_format import MessageToDict

    from hybrid.client import Completion

    completion = Completion()
    for chunk in chunks:
        completion.add(chunk)
        if as_json:
            print(json.dumps(MessageToDict(chunk, preserving_proto_field_name=True)), flush=True)
        else:
            print(chunk.text, end="", flush=True)
    if not as_json:
        print()
        served = completion.served_by
        if served is not None:
            from hybrid.v1 import inference_pb2 as pb

            usage, timing = completion.usage, completion.timing
            _console().print(
                f"[dim]served by {pb.Tier.Name(served.tier).lower()} replica {served.replica_id} in {served.region} "
                f"({served.precision}); {usage.prompt_tokens}+{usage.completion_tokens} tokens, first token after "
                f"{timing.time_to_first_token_ms:.0f} ms, total {timing.total_ms:.0f} ms, finish {completion.finish_reason}[/]"
            )


def cmd_generate(args: argparse.Namespace) -> int:
    from hybrid.client import HybridClient

    params = dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        stop=args.stop,
        priority=args.priority,
        affinity_key=args.affinity_key,
        client_region=args.client_region,
        full_precision=args.full_precision,
        model=args.model,
    )
    prompt, messages = (args.prompt, None) if args.raw else (None, [{"role": "user", "content": args.prompt}])
    with HybridClient(args.target, timeout_s=args.timeout) as client:
        _print_chunks(client.stream(prompt, messages, **params), args.json)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """The embedded default on one machine: the artifact, an edge agent, static discovery (or Consul)."""
    import signal
    import threading

    from edge_agent.config import EdgeAgentConfig
    from edge_agent.server import BackgroundEdgeAgent
    from hybrid.client import HybridClient
    from hybrid.models.export import export_artifact

    console = _console()
    state = Path(args.state_dir)
    artifact = state / "artifact"
    if not (artifact / "manifest.json").is_file():
        with console.status("building the edge artifact (first run only)") as status:
            export_artifact(out=artifact, progress=lambda m: (status.update(m), console.log(m)))
    # DESIGN "Command line": Consul when CONSUL_HTTP_ADDR is set, else the static file.
    discovery = "consul" if os.environ.get("CONSUL_HTTP_ADDR") else f"static:{state / 'discovery.yaml'}"
    with console.status("starting the edge agent"):
        edge = BackgroundEdgeAgent(
            EdgeAgentConfig(
                artifact=artifact,
                host=args.host,
                port=args.edge_port,
                region=args.region,
                discovery=discovery,
            )
        )
    console.print(f"[bold green]edge agent[/] {edge.address}  region {args.region}  ({edge.agent.manifest.precision})")
    console.print(f"[bold green]discovery[/]  {discovery}")
    console.print(f'try: hybrid generate "Hello" --target {edge.address}')
    try:
        if args.prompt:
            with HybridClient(edge.address) as client:
                _print_chunks(
                    client.stream(
                        messages=[{"role": "user", "content": args.prompt}], max_new_tokens=args.max_new_tokens
                    ),
                    False,
                )
        if not args.once:
            stop = threading.Event()
            # Installed explicitly: a shell that starts us in the background leaves SIGINT ignored.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            console.print("serving; Ctrl-C stops everything")
            stop.wait()
    finally:
        console.print("stopping")
        edge.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybrid", description="Edge-and-cloud LLM inference.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    from hybrid.models.export import PRECISION_CHOICES

    export = commands.add_parser("export", help="build a quality-gated edge artifact")
    export.add_argument("--model", default=constants.DEFAULT_MODEL, help="model name or local Hugging Face folder")
    export.add_argument(
        "--precision", default="auto", choices=PRECISION_CHOICES, help="auto picks the fastest that passes the gate"
    )
    export.add_argument("--out", help="folder to place the artifact in (it is also cached by content hash)")
    export.add_argument(
        "--force", action="store_true", help="ship a precision that fails the quality gate, labelled so"
    )
    export.set_defaults(func=cmd_export)

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
        "--discovery",
        default=f"static:{constants.DEFAULT_STATIC_DISCOVERY_FILE}",
        help="static:FILE, consul (CONSUL_HTTP_ADDR or the local agent), consul:HOST:PORT or none",
    )
    serve.add_argument("--cost-per-hour", type=float, default=0.0)
    serve.set_defaults(func=cmd_edge_serve)

    generate = commands.add_parser("generate", help="stream an answer")
    generate.add_argument("prompt")
    generate.add_argument(
        "--target", default=f"{constants.DEFAULT_HOST}:{constants.DEFAULT_EDGE_PORT}", help="HOST:PORT"
    )
    generate.add_argument("--priority", default="interactive", choices=["realtime", "interactive", "batch"])
    generate.add_argument("--max-new-tokens", type=int, default=0, help=f"0 means {constants.DEFAULT_MAX_NEW_TOKENS}")
    generate.add_argument("--temperature", type=float, default=None)
    generate.add_argument("--top-p", type=float, default=None)
    generate.add_argument("--seed", type=int, default=None)
    generate.add_argument("--stop", action="append", default=[])
    generate.add_argument("--model", default="")
    generate.add_argument("--affinity-key", default="")
    generate.add_argument("--client-region", default="")
    generate.add_argument("--full-precision", action="store_true", help="refuse quantized replicas")
    generate.add_argument("--raw", action="store_true", help="send the text as a raw prompt, not as a chat message")
    generate.add_argument("--json", action="store_true", help="one JSON object per chunk, served_by included")
    generate.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds")
    generate.set_defaults(func=cmd_generate)

    up = commands.add_parser("up", help="run the embedded default stack on this machine")
    up.add_argument("--state-dir", default=str(constants.CACHE_DIR / "up"))
    up.add_argument("--host", default=constants.DEFAULT_HOST)
    up.add_argument("--edge-port", type=int, default=constants.DEFAULT_EDGE_PORT)
    up.add_argument("--region", default=constants.DEFAULT_REGION)
    up.add_argument("--prompt", default="", help="once the stack is up, answer this through it")
    up.add_argument("--max-new-tokens", type=int, default=64)
    up.add_argument("--once", action="store_true", help="stop after answering --prompt")
    up.set_defaults(func=cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("CHECKPOINT_DISABLE", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    from hybrid.client import RequestFailed

    try:
        return args.func(args)
    except RequestFailed as failure:
        hint = f" (retry after {failure.retry_after_ms} ms)" if failure.retry_after_ms else ""
        print(f"error: {failure.code.name}: {failure.details}{hint}", file=sys.stderr)
        return 1
    except (HybridError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
