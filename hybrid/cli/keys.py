"""`hybrid keys add|list|revoke` (the router's key file) and `hybrid usage` (a running router's usage per key)."""

from __future__ import annotations

import argparse
import json
import os

from hybrid import constants, wire
from hybrid.cli.common import console, positive_float
from hybrid.protocol import Priority

DEFAULT_KEY_FILE = constants.CACHE_DIR / "keys.yaml"
USAGE_TIMEOUT_S = 10.0


def _priorities(text: str) -> tuple[str, ...]:
    """An argparse type: a comma-separated list of priorities."""
    names = tuple(name.strip().lower() for name in text.split(",") if name.strip())
    for name in names:
        if name not in Priority.names():
            raise argparse.ArgumentTypeError(f"unknown priority {name!r}: use {', '.join(Priority.names())}")
    if not names:
        raise argparse.ArgumentTypeError(f"give at least one of {', '.join(Priority.names())}")
    return names


def _positive_int(text: str) -> int:
    value = positive_float(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text} must be a whole number")
    return int(value)


def cmd_keys_add(args: argparse.Namespace) -> int:
    from hybrid.security.keys import KeyLimits, add_key

    limits = KeyLimits(
        requests_per_s=args.rps, burst=args.burst, tokens_per_min=args.tokens_per_min, streams=args.streams
    )
    key = add_key(args.keys, args.name, args.priorities, limits, args.admin)
    out = console()
    out.print(
        f"key {args.name!r} added to {args.keys}: priorities {', '.join(args.priorities)}; {limits.describe()}"
        f"{'; admin' if args.admin else ''}. It is shown once, below: only its digest is kept."
    )
    # The key alone on stdout, so that `KEY=$(hybrid keys add NAME)` captures it.
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from hybrid.security.keys import load_key_file

    key_file = load_key_file(args.keys)
    if args.json:
        rows = [entry.model_dump(mode="json", exclude={"sha256"}) for entry in key_file.keys]
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"API keys in {args.keys}")
    for column in ("name", "priorities", "limits", "admin", "created"):
        table.add_column(column)
    for entry in key_file.keys:
        table.add_row(
            entry.name,
            ", ".join(entry.priorities),
            entry.limits.describe(),
            "yes" if entry.admin else "",
            entry.created,
        )
    console().print(table)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from hybrid.security.keys import revoke_key

    revoke_key(args.keys, args.name)
    console().print(f"key {args.name!r} revoked: a router using {args.keys} refuses it within a second or two")
    return 0


def fetch_usage(router: str, api_key: str, timeout_s: float = USAGE_TIMEOUT_S) -> dict:
    """``GET /v1/usage`` of the router's HTTP front at ``router`` (HOST:PORT or a URL). Raises ValueError."""
    import urllib.error
    import urllib.request

    base = router if "://" in router else f"http://{router}"
    request = urllib.request.Request(
        base.rstrip("/") + "/v1/usage", headers={"authorization": f"Bearer {api_key}", "accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = error.reason
        raise ValueError(f"{base}/v1/usage answered {error.code}: {message}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ValueError(
            f"could not reach the router's HTTP front at {base} ({error}): give --router HOST:PORT of --http-port"
        ) from None


def cmd_usage(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    api_key = args.key or os.environ.get(wire.API_KEY_ENV)
    if not api_key:
        raise ValueError(f"an admin key is needed: give --key KEY or set ${wire.API_KEY_ENV}")
    usage = fetch_usage(args.router, api_key)
    if args.json:
        print(json.dumps(usage, indent=2))
        return 0
    table = Table(title=f"usage per API key at {args.router}")
    for column in ("key", "requests", "prompt tokens", "completion tokens", "cost $", "refused"):
        table.add_column(column, justify="left" if column == "key" else "right")
    for row in [*usage["keys"], {"key": "total", **usage["totals"]}]:
        table.add_row(
            row["key"],
            str(row["requests"]),
            str(row["prompt_tokens"]),
            str(row["completion_tokens"]),
            f"{row['cost_dollars']:.6f}",
            str(row["refused"]),
            end_section=row["key"] != "total" and row is usage["keys"][-1],
        )
    Console().print(table)  # the answer itself: on stdout
    return 0


def add_key_file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", default=str(DEFAULT_KEY_FILE), help="the key file (default: %(default)s)")


def add_commands(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="the router's API keys").add_subparsers(dest="keys_command", required=True)
    add = keys.add_parser("add", help="make a key: printed once, only its digest is written")
    add.add_argument("name", help="who the key is for, as logs, metrics and usage name it")
    add.add_argument(
        "--priorities",
        type=_priorities,
        default=("interactive", "batch"),
        help="comma-separated priorities the key may send (default: interactive,batch); realtime is a privilege",
    )
    add.add_argument("--rps", type=positive_float, default=None, help="requests per second (default: unlimited)")
    add.add_argument("--burst", type=_positive_int, default=None, help="requests at once above --rps (default: 1 s)")
    add.add_argument("--tokens-per-min", type=_positive_int, default=None, help="prompt + completion tokens a minute")
    add.add_argument("--streams", type=_positive_int, default=None, help="requests in flight at once")
    add.add_argument("--admin", action="store_true", help="may call RouterAdmin and read GET /v1/usage")
    add_key_file_argument(add)
    add.set_defaults(func=cmd_keys_add)
    listing = keys.add_parser("list", help="the keys, their priorities and limits (never the keys themselves)")
    listing.add_argument("--json", action="store_true")
    add_key_file_argument(listing)
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="remove a key; a running router refuses it from its next check")
    revoke.add_argument("name")
    add_key_file_argument(revoke)
    revoke.set_defaults(func=cmd_keys_revoke)

    usage = commands.add_parser("usage", help="a running router's usage per API key (needs an admin key)")
    usage.add_argument(
        "--router",
        default=f"{constants.DEFAULT_HOST}:{constants.DEFAULT_ROUTER_HTTP_PORT}",
        help="HOST:PORT (or URL) of the router's OpenAI front, its --http-port (default: %(default)s)",
    )
    usage.add_argument("--key", default=None, help=f"an admin key; default ${wire.API_KEY_ENV} (not shown by ps)")
    usage.add_argument("--json", action="store_true", help="the usage endpoint's JSON as it came")
    usage.set_defaults(func=cmd_usage)
