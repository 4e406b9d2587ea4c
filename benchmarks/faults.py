"""Fault runs: a steady load through a real router while a replica, discovery or the router fails.

Each scenario starts a fresh stack on loopback (the router and two synthetic replicas, each a process of
its own), sends requests open-loop through the project's async client, strikes, repairs, and measures:
streams hung to their deadline, requests lost with and without a first token, the time until the router
stops sending to the failed replica, and the time until it sends to it again once it serves. Prints the
table that docs/faults.md records.

    python benchmarks/faults.py [--rate 20] [--seconds 12] [--only killed]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def main(args: argparse.Namespace) -> None:
    from hybrid.bench.faults import SCENARIOS, TABLE_HEADER, FaultRunConfig, run_scenario

    config = FaultRunConfig(rate=args.rate, seconds=args.seconds)
    results = []
    print(TABLE_HEADER, flush=True)
    for name, scenario in SCENARIOS.items():
        if args.only and not any(word in name for word in args.only):
            continue
        result = await run_scenario(name, scenario, config)
        results.append(result)
        print(result.row(), flush=True)
    if args.out:
        report = {
            "machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores".strip(),
            "config": asdict(config),
            "results": [
                {
                    "scenario": r.scenario,
                    "requests": len(r.outcomes),
                    "hung": r.hung,
                    "lost_without_first_token": r.lost_without_first_token,
                    "lost_with_first_token": r.lost_with_first_token,
                    "detect_s": r.detect_s,
                    "return_s": r.return_s,
                }
                for r in results
            ],
        }
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests a second")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each scenario's run")
    parser.add_argument("--only", action="append", default=[], help="run the scenarios whose name has this word")
    parser.add_argument("--out", default="", help="write the figures as JSON here")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    asyncio.run(main(parser.parse_args()))
