"""CPU the status books and the scaling signal add to one routed request: their notes on the choice, and their
call hooks on the call sent, its chunks and its end, timed in a loop (process time, best of three runs).

    python benchmarks/status_hooks_cost.py --requests 100000 --chunks 4
"""

from __future__ import annotations

import argparse
import time

from prometheus_client import CollectorRegistry

from hybrid.discovery import ReplicaRecord
from hybrid.protocol import Tier
from hybrid.router.ledger import OK, Call
from hybrid.router.policy.ejection import OutlierDetector
from hybrid.router.policy.policy import Decision
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.policy.tiers import RequestClass
from hybrid.router.scaling import ScalingSignal
from hybrid.router.status.books import StatusBooks


def per_request_us(requests: int, chunks: int, with_hooks: bool) -> float:
    record = ReplicaRecord(
        id="p", address="127.0.0.1", port=1, tier="private", model="m", precision="bf16", region="r", capacity=8
    )
    state, outliers = ReplicaState(record=record), OutlierDetector()
    books = StatusBooks(outliers, lambda: [state])
    scaling = ScalingSignal(outliers, lambda: [state], CollectorRegistry())
    decision = Decision(RequestClass.COLD_INTERACTIVE, [Tier.PRIVATE, Tier.PUBLIC], state)
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        for _ in range(requests):
            call = Call(state, 0.0, None, 16, "cold INTERACTIVE", 0.0)
            if with_hooks:
                books.routed(decision, 0, "")
                scaling.routed(decision, 0)
                books.sent(call)
            for index in range(chunks):
                now = 0.01 * (index + 1)
                call.streamed(4, now)  # what the hook chain does for every hook list
                if with_hooks:
                    books.chunk(call, 4, now)
            if with_hooks:
                books.ended(call, OK, 0.05)
                scaling.ended(call, OK, 0.05)
        best = min(best, time.process_time() - began)
    return best / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--chunks", type=int, default=4)
    args = parser.parse_args()
    without = per_request_us(args.requests, args.chunks, False)
    with_hooks = per_request_us(args.requests, args.chunks, True)
    print(
        f"{args.chunks} chunks a request: {without:.2f} us without the hooks, {with_hooks:.2f} us with them, "
        f"{with_hooks - without:.2f} us added"
    )


if __name__ == "__main__":
    main()
