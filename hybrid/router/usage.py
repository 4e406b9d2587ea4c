"""Usage per API key: requests, prompt and completion tokens, and what they cost; a call hook.

Counted as Prometheus counters labelled by the key's name (never the key), so ``/metrics`` shows them and
``GET /v1/usage`` reads them back. Where the router runs as several workers (``hybrid.router.workers``) each
counts its own share into prometheus_client's multiprocess files, and ``snapshot`` reads those files: the
usage any worker answers with is the whole router's.

Cost is provisioned, as ``hybrid.pricing`` prices tokens: every ``settle`` each serving replica's
``cost_per_hour`` over the time since the last settle is split over the keys by the completion tokens each
got from it in that time. A replica's time in which it produced no key's tokens is idle and charged to no
key. With N workers each charges 1/N of every replica's time, so the workers' shares add up to the replica's.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry, Counter, multiprocess

from hybrid.pricing import provisioned_dollars, split_by_tokens
from hybrid.router.ledger import Call, CallHooks, Outcome

_PREFIX = "hybrid_router_key_"


@dataclass
class KeyUsage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_dollars: float = 0.0
    refused: int = 0


_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cost_dollars")


class UsageMeter(CallHooks):
    def __init__(
        self, registry: CollectorRegistry, replica_share: float = 1.0, clock: Callable[[], float] = time.monotonic
    ):
        """``replica_share``: the part of each replica's time this process pays for (1 / workers)."""
        self.registry = registry
        self.replica_share = replica_share
        self.clock = clock
        self.counters = {
            "requests": Counter(
                f"{_PREFIX}requests", "Requests answered, per API key name.", ["key"], registry=registry
            ),
            "prompt_tokens": Counter(
                f"{_PREFIX}prompt_tokens",
                "Prompt tokens of answered requests, per API key name.",
                ["key"],
                registry=registry,
            ),
            "completion_tokens": Counter(
                f"{_PREFIX}completion_tokens",
                "Completion tokens streamed, per API key name.",
                ["key"],
                registry=registry,
            ),
            "cost_dollars": Counter(
                f"{_PREFIX}cost_dollars",
                "Provisioned cost of the tokens served, per API key name (replicas' cost_per_hour split by tokens).",
                ["key"],
                registry=registry,
            ),
        }
        self.refusals = Counter(
            f"{_PREFIX}refusals",
            "Requests of a valid key refused: priority, admin, requests, tokens or streams.",
            ["key", "reason"],
            registry=registry,
        )
        self.unauthenticated = Counter(
            "hybrid_router_unauthenticated",
            "Calls refused for want of a valid API key (none, unknown or revoked): guessing shows here.",
            registry=registry,
        )
        # Completion tokens per replica and key since the last settle, and each replica's price.
        self._pending: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._price: dict[str, float] = {}
        self._settled_at = clock()
        self._by_key: dict[str, tuple[Counter, Counter, Counter]] = {}

    def refused(self, name: str, reason: str) -> None:
        self.refusals.labels(name, reason).inc()

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        grant = call.grant
        if grant is None or call.chunks == 0:
            return  # a call that never answered (retried elsewhere, or refused) is no usage
        name = grant.key.name
        prompt, completion = call.reported_usage or (grant.prompt_estimate, call.tokens)
        requests, prompt_tokens, completion_tokens = self._children(name)
        requests.inc()
        prompt_tokens.inc(prompt)
        completion_tokens.inc(completion)
        if completion:
            self._pending[call.replica.replica_id][name] += completion
            self._price[call.replica.replica_id] = call.replica.record.cost_per_hour

    def _children(self, name: str) -> tuple[Counter, Counter, Counter]:
        """The key's requests, prompt and completion counters, looked up once: labels() costs more than the rest
        of a request's usage."""
        children = self._by_key.get(name)
        if children is None:
            children = self._by_key[name] = tuple(
                self.counters[field].labels(name) for field in ("requests", "prompt_tokens", "completion_tokens")
            )
        return children

    def settle(self) -> None:
        """Charges the keys for the replicas' time since the last settle (see the module's docstring)."""
        now = self.clock()
        elapsed_s, self._settled_at = now - self._settled_at, now
        for replica_id, tokens in self._pending.items():
            dollars = provisioned_dollars(self._price[replica_id], elapsed_s, self.replica_share)
            for name, share in split_by_tokens(dollars, tokens).items():
                self.counters["cost_dollars"].labels(name).inc(share)
        self._pending.clear()

    def snapshot(self) -> dict[str, KeyUsage]:
        """Every key's usage so far, of the whole router (all its workers)."""
        self.settle()
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        registry = self.registry
        if folder:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=folder)
        usage: dict[str, KeyUsage] = defaultdict(KeyUsage)
        for family in registry.collect():
            if not family.name.startswith(_PREFIX):
                continue
            field = family.name.removeprefix(_PREFIX)
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                row = usage[sample.labels["key"]]
                if field == "refusals":
                    row.refused += int(sample.value)
                elif field in _FIELDS:
                    value = sample.value if field == "cost_dollars" else int(sample.value)
                    setattr(row, field, getattr(row, field) + value)
        return dict(sorted(usage.items()))


def usage_json(usage: dict[str, KeyUsage]) -> dict:
    """The body of ``GET /v1/usage``."""
    return {
        "object": "usage",
        "keys": [{"key": name, **asdict(row)} for name, row in usage.items()],
        "totals": {field: sum(getattr(row, field) for row in usage.values()) for field in (*_FIELDS, "refused")},
    }
