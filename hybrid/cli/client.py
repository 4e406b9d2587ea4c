"""`hybrid generate` and `hybrid explain`: a request to a running router, edge agent or cloud ingress."""

from __future__ import annotations

import argparse
import json
import os

from hybrid import constants, wire
from hybrid.cli.common import add_api_key_argument, add_tls_arguments, print_chunks, tls_from_args
from hybrid.protocol import Priority


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
    prompt, messages = _prompt(args)
    with HybridClient(
        args.target,
        timeout_s=args.timeout,
        application=args.application or None,
        tls=tls_from_args(args),
        api_key=args.api_key,
    ) as client:
        print_chunks(client.stream(prompt, messages, **params), args.json)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    import grpc

    from hybrid.client import _failure, build_request
    from hybrid.security.tls import secure_channel
    from hybrid.v1 import inference_pb2 as pb
    from hybrid.v1 import router_admin_pb2_grpc as admin_grpc

    prompt, messages = _prompt(args)
    request = build_request(
        prompt, messages, priority=args.priority, affinity_key=args.affinity_key, full_precision=args.full_precision
    )
    tls = tls_from_args(args)
    with secure_channel(args.target, tls, aio=False) as channel:
        try:
            metadata = wire.call_metadata(api_key=args.api_key or os.environ.get(wire.API_KEY_ENV))
            reply = admin_grpc.RouterAdminStub(channel).Explain(request, timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as error:
            raise _failure(error, (), tls) from None
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(reply)))
        return 0
    chosen = reply.chosen
    where = (
        f"{pb.Tier.Name(chosen.tier).lower()} replica {chosen.replica_id} at {chosen.address} ({chosen.precision})"
        if chosen.replica_id
        else "nowhere: RESOURCE_EXHAUSTED"
    )
    print(f"class {reply.request_class}; would go to {where}")
    for reason in reply.reasons:
        print(f"  - {reason}")
    return 0


def _prompt(args: argparse.Namespace) -> tuple[str | None, list[dict[str, str]] | None]:
    """The text as a raw prompt with --raw, else as one user message."""
    return (args.prompt, None) if args.raw else (None, [{"role": "user", "content": args.prompt}])


def add_priority_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--priority", default="interactive", choices=Priority.names())


def add_commands(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser("explain", help="print the router's decision for a request, and why")
    explain.add_argument("prompt")
    explain.add_argument("--target", default=f"{constants.DEFAULT_HOST}:{constants.DEFAULT_ROUTER_PORT}")
    add_priority_argument(explain)
    explain.add_argument("--affinity-key", default="")
    explain.add_argument("--full-precision", action="store_true")
    explain.add_argument("--raw", action="store_true", help="send the text as a raw prompt, not as a chat message")
    explain.add_argument("--json", action="store_true")
    explain.add_argument("--timeout", type=float, default=10.0)
    add_tls_arguments(explain, serves=False)
    add_api_key_argument(explain, " (an admin key)")
    explain.set_defaults(func=cmd_explain)

    generate = commands.add_parser("generate", help="stream an answer")
    generate.add_argument("prompt")
    generate.add_argument(
        "--target", default=f"{constants.DEFAULT_HOST}:{constants.DEFAULT_EDGE_PORT}", help="HOST:PORT"
    )
    add_priority_argument(generate)
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
    generate.add_argument("--application", default="", help="Serve application, when the target runs several")
    add_tls_arguments(generate, serves=False)
    add_api_key_argument(generate)
    generate.set_defaults(func=cmd_generate)
