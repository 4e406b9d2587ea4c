"""The `hybrid` command line.

The core's commands live in this package, one module per group; each tier adds its own
(`hybrid edge ...`, `hybrid cloud ...`, `hybrid export`, `hybrid artifacts ...`) through its
plugin (``hybrid.tiers``), so the core never imports a tier.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from hybrid import tiers
from hybrid.errors import HybridError


def build_parser() -> argparse.ArgumentParser:
    from hybrid.cli import bench, certs, client, keys, router, status, up

    parser = argparse.ArgumentParser(prog="hybrid", description="Edge-and-cloud LLM inference.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for plugin in tiers.plugins().values():
        plugin.add_commands(commands)
    for group in (router, client, keys, up, bench, status, certs):
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("CHECKPOINT_DISABLE", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    from hybrid.client import RequestFailed
    from hybrid.serving.ports import PortTakenError

    try:
        return args.func(args)
    except RequestFailed as failure:
        hint = f" (retry after {failure.retry_after_ms} ms)" if failure.retry_after_ms else ""
        print(f"error: {failure.code.name}: {failure.details}{hint}", file=sys.stderr)
        return 1
    except (HybridError, ValueError, PortTakenError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
