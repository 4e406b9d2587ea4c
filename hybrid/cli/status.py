"""`hybrid status`: the router's live status in the terminal, read from its ``/status.json``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

from hybrid import wire
from hybrid.cli.common import add_api_key_argument, positive_float

STATE_STYLES = {"serving": "green", "draining": "yellow", "ejected": "bold red", "leaving": "dim"}
PIPED_WIDTH = 160
TIER_STYLES = {"edge": "green", "private": "blue", "public": "magenta", "none": "red"}


def status_url(router: str, minutes: int | None) -> str:
    """``host:port`` or an http(s) URL of the router's HTTP front, to its /status.json."""
    base = router if "://" in router else f"http://{router}"
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"--router {router!r}: give host:port of the router's HTTP front, or an http(s):// URL")
    url = base.rstrip("/") + "/status.json"
    return f"{url}?minutes={minutes}" if minutes else url


def fetch_status(url: str, api_key: str | None = None, timeout_s: float = 5.0) -> dict:
    """``/status.json``; ``api_key``: an admin key, for a router that checks keys."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        raise ValueError(f"{url} answered HTTP {error.code}: {error.read()[:300].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ValueError(
            f"cannot read {url} ({reason}): is the router serving its HTTP front there (hybrid router serve "
            "--http-port PORT)?"
        ) from None


def _num(value, digits: int = 0, unit: str = "") -> str:
    return "–" if value is None else f"{value:,.{digits}f}{unit}"


def _money(value) -> str:
    return "–" if value is None else f"${value:,.{4 if value < 1 else 2}f}"


def _tier(name: str) -> str:
    return f"[{TIER_STYLES.get(name, 'white')}]{name}[/]"


def _verdict(met) -> str:
    return "" if met is None else " [green]✓[/]" if met else " [bold red]✗[/]"


def headline(document: dict) -> str:
    success, ttft, cost, router = document["success"], document["ttft"], document["cost"], document["router"]
    rate = None if success["rate"] is None else success["rate"] * 100
    lines = [
        f"[bold]Hybrid router[/] pid {router['pid']} · up {router['uptime_s'] / 60:.1f} min · last "
        f"{document['window']['minutes']} min · discovery {'healthy' if router['discovery_healthy'] else '[red]stale[/]'}",
        f"success {_num(rate, 2, ' %')} (target {success['target'] * 100:.1f} %){_verdict(success['met'])} · "
        f"{ttft['target_class']} TTFT p99 {_num(ttft['p99_ms'], 0, ' ms')} (target {ttft['target_p99_ms']:.0f} ms)"
        f"{_verdict(ttft['met'])} · {_money(cost['cost_per_million_tokens'])} per M tokens · "
        f"{success['answered']} answered, {success['failed']} failed, {success['refused']} refused, "
        f"{success['retried']} retried",
    ]
    if router["workers"] > 1:
        lines.append(f"[yellow]figures of calls: {router['scope']}[/]")
    return "\n".join(lines)


def tiers_table(document: dict):
    from rich.table import Table

    table = Table(title="Tiers", title_justify="left", expand=True)
    for column in ("tier", "replicas", "queue", "batch", "arrivals/s", "forecast/s", "desired", "$/h", "$/M tok"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    costs = document["cost"]["tiers"]
    for t in document["tiers"]:
        states = ", ".join(f"{t[s]} {s}" for s in ("draining", "ejected", "leaving") if t[s])
        desired = f"{t['desired_replicas']}" + (
            f" ↑ {t['scaling_driver']}" if t["desired_replicas"] > t["serving"] else ""
        )
        table.add_row(
            _tier(t["tier"]),
            f"{t['replicas']}" + (f" ({states})" if states else ""),
            str(t["queue"]),
            f"{t['batch']}/{t['capacity']}",
            _num(t["arrivals_per_s"], 1),
            _num(t["forecast_per_s"], 1),
            desired,
            _money(t["cost_per_hour"]),
            _money(costs.get(t["tier"], {}).get("cost_per_million_tokens")),
        )
    return table


def replicas_table(document: dict):
    from rich.table import Table

    table = Table(title="Replicas", title_justify="left", expand=True)
    columns = ("replica", "tier", "state", "queue", "batch", "calls", "ms/token", "TTFT p90", "RTT ms", "region")
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("replica", "tier", "state", "region") else "right", no_wrap=True
        )
    for r in document["replicas"]:
        state = f"[{STATE_STYLES.get(r['state'], 'white')}]{r['state']}[/]"
        if r["ejected_for_s"]:
            state += f" {r['ejected_for_s']:.0f} s"
        table.add_row(
            r["id"],
            _tier(r["tier"]),
            state,
            str(r["queue"]),
            f"{r['batch']}/{r['capacity']}",
            str(r["outstanding"]),
            _num(r["pace_token_ms"] if r["pace_token_ms"] is not None else r["recent_token_ms"], 1),
            _num(r["ttft_p90_ms"], 0),
            _num(r["rtt_ms"], 1),
            r["region"],
        )
    if not document["replicas"]:
        table.add_row("[dim]no replica listed by discovery[/]", *[""] * (len(columns) - 1))
    return table


def mix_table(document: dict):
    from rich.table import Table

    tiers = document["mix"]["tiers"]
    table = Table(title="Request mix (calls)", title_justify="left")
    table.add_column("class")
    for tier in [*tiers, "all"]:
        table.add_column(tier if tier == "all" else _tier(tier), justify="right")
    for request_class, by_tier in document["mix"]["by_class"].items():
        table.add_row(request_class, *(str(by_tier.get(t, 0)) for t in tiers), str(sum(by_tier.values())))
    return table


def events_table(document: dict, failures: int = 5):
    from rich.table import Table

    table = Table(title="Spillovers and last failures", title_justify="left", expand=True)
    for column in ("what", "where", "why", "count / when"):
        table.add_column(column, justify="right" if column == "count / when" else "left", overflow="fold")
    for s in document["spillovers"]:
        table.add_row("spillover", f"{_tier(s['from_tier'])} → {_tier(s['to_tier'])}", s["reason"], str(s["count"]))
    now = document["generated_at"]
    for f in document["last_failures"][:failures]:
        where = f"{_tier(f['tier'])} {f['replica']}".strip()
        table.add_row(f"[red]{f['outcome']}[/] {f['request_class']}", where, f["detail"], f"{now - f['at']:.0f} s ago")
    if not table.row_count:
        table.add_row("[dim]none: every call went to its class's first tier, and none failed[/]", "", "", "")
    return table


def render(document: dict, problem: str = ""):
    from rich.columns import Columns
    from rich.console import Group

    parts = [headline(document)]
    if problem:
        parts.append(f"[bold red]{problem}[/] (showing the last figures read)")
    parts += [tiers_table(document), replicas_table(document), Columns([mix_table(document)]), events_table(document)]
    return Group(*parts)


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    url = status_url(args.router, args.minutes)
    api_key = args.api_key or os.environ.get(wire.API_KEY_ENV)
    document = fetch_status(url, api_key)
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    # Piped or captured, a frame is not cut to the 80 columns rich assumes without a terminal.
    console = Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
    if args.once:
        console.print(render(document))
        return 0
    with Live(render(document), console=console, screen=False, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(args.interval)
                try:
                    document, problem = fetch_status(url, api_key), ""
                except ValueError as error:
                    problem = f"{datetime.now():%H:%M:%S} {error}"
                live.update(render(document, problem), refresh=True)
        except KeyboardInterrupt:
            pass
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status", help="the router's live status: tiers, replicas, mix, spillovers, success, cost (from /status.json)"
    )
    status.add_argument(
        "--router", required=True, metavar="HTTP_ADDR", help="host:port (or URL) of the router's HTTP front"
    )
    status.add_argument("--once", action="store_true", help="print one frame and exit")
    status.add_argument("--json", action="store_true", help="print /status.json as it came and exit")
    status.add_argument(
        "--interval", type=positive_float, default=2.0, help="seconds between refreshes of the live table"
    )
    status.add_argument(
        "--minutes", type=int, default=None, choices=range(1, 16), metavar="1-15", help="sum over the last minutes"
    )
    add_api_key_argument(status, " (an admin key)")
    status.set_defaults(func=cmd_status)
