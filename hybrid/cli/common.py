"""What several commands share: the console on stderr, printing an answer, the --discovery and tracing flags."""

from __future__ import annotations

import argparse
import json

from hybrid import constants, wire
from hybrid.discovery.spec import DISCOVERY_SPEC_HELP
from hybrid.security.tls import ENV_CA, ENV_CERT, ENV_KEY, ENV_PLAINTEXT, TlsSettings
from hybrid.telemetry.tracing import TracingSettings


def console():
    from rich.console import Console

    return Console(stderr=True)


def positive_float(text: str) -> float:
    """An argparse type: a number above zero, refused at parse time (before anything starts) otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a number of zero or more."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def positive_share(text: str) -> float:
    """An argparse type: a share above 0 and at most 1."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be above 0 and at most 1 (e.g. 0.8)")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def add_api_key_argument(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"API key of a router that checks keys{what}; default ${wire.API_KEY_ENV} (safer: not shown by ps)",
    )


def add_discovery_argument(parser: argparse.ArgumentParser, also: str = "") -> None:
    """``--discovery SPEC``, the static file by default; ``also`` is said after the accepted forms."""
    parser.add_argument(
        "--discovery",
        default=f"static:{constants.DEFAULT_STATIC_DISCOVERY_FILE}",
        help=f"{DISCOVERY_SPEC_HELP}{also}",
    )


def add_tls_arguments(parser: argparse.ArgumentParser, serves: bool = True) -> None:
    """``--tls-cert``, ``--tls-key``, ``--tls-ca`` and ``--plaintext``, each defaulting to its environment variable;
    ``serves`` words the help for a server (which also presents its certificate to whatever it calls)."""
    group = parser.add_argument_group(
        "TLS",
        "mutual TLS; `hybrid certs init DIR` makes a CA and certificates"
        + (". Without a certificate the server binds loopback only" if serves else ""),
    )
    side = "this server's (and, calling replicas, this client's)" if serves else "the client's"
    group.add_argument("--tls-cert", metavar="FILE", help=f"{side} PEM certificate (env {ENV_CERT})")
    group.add_argument("--tls-key", metavar="FILE", help=f"its PEM private key (env {ENV_KEY})")
    group.add_argument(
        "--tls-ca",
        metavar="FILE",
        help=f"PEM CA the other side's certificate must chain to (env {ENV_CA})",
    )
    group.add_argument(
        "--plaintext",
        action="store_true",
        help=f"no TLS, on purpose ({ENV_PLAINTEXT}=1)"
        + (": lets a server bind addresses other than loopback unencrypted" if serves else ""),
    )


def tls_from_args(args: argparse.Namespace) -> TlsSettings:
    """The TLS flags, filled from the environment where not given."""
    return TlsSettings.resolve(args.tls_cert, args.tls_key, args.tls_ca, args.plaintext)


def print_chunks(chunks, as_json: bool) -> None:
    """An answer's text on stdout as it streams (or one JSON object per chunk); where it was served on stderr."""
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
            console().print(
                f"[dim]served by {pb.Tier.Name(served.tier).lower()} replica {served.replica_id} in {served.region} "
                f"({served.precision}); {usage.prompt_tokens}+{usage.completion_tokens} tokens, first token after "
                f"{timing.time_to_first_token_ms:.0f} ms, total {timing.total_ms:.0f} ms, finish {completion.finish_reason}[/]"
            )


def share(text: str) -> float:
    """An argparse type: a share between 0 and 1 (a sampling rate), refused at parse time otherwise."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def add_tracing_arguments(parser: argparse.ArgumentParser) -> None:
    """The tracing flags every serving command takes (hybrid.telemetry.tracing)."""
    parser.add_argument(
        "--otlp-endpoint",
        default=None,
        help="send OpenTelemetry traces over OTLP/gRPC to this collector (e.g. http://localhost:4317); tracing is "
        "off without it, unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER=otlp turns it on",
    )
    parser.add_argument(
        "--trace-sample",
        type=share,
        default=None,
        help="share (0..1) of the traces starting here that are recorded; a caller's sampled flag is followed "
        "(default: OTEL_TRACES_SAMPLER, else every trace)",
    )


def tracing_settings(args: argparse.Namespace) -> TracingSettings:
    return TracingSettings(otlp_endpoint=args.otlp_endpoint, sample_ratio=args.trace_sample)
