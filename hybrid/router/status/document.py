"""``/status.json``: the router's view of its tiers and replicas, and what its calls did over the last minutes.

One document, read by the page (``/status``) and by ``hybrid status``. Every figure comes from a book the
router keeps anyway: the view (discovery's records, each replica's last load report, the round trip to it),
the outlier detector, the call ledger, the status books (``books``) and the scaling signal.

Cost per million tokens is provisioned cost (``hybrid.pricing``): the replicas listed now, each at its
discovery record's ``cost_per_hour``, over the window (or since the router started, where that is sooner),
divided by the completion tokens of the calls that ended well in it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import TYPE_CHECKING

from hybrid.pricing import TierCost, provisioned_cost
from hybrid.router.ledger import CallLedger
from hybrid.router.policy.ejection import OutlierDetector
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.scaling import TIERS
from hybrid.router.status.books import ALL, NO_TIER, MinuteBucket, StatusBooks, merged_ttft

if TYPE_CHECKING:
    from hybrid.router.dataplane import RouterDataPlane

# The share of requests that must succeed, as the overload bench's goal sets it.
SUCCESS_TARGET = 0.999
SERVING, DRAINING, EJECTED, LEAVING = "serving", "draining", "ejected", "leaving"


def replica_row(replica: ReplicaState, state: str, ledger: CallLedger, outliers: OutlierDetector, now: float) -> dict:
    record = replica.record
    rows = min(replica.capacity, replica.active + 1)
    ejected_for = outliers.ejected_until(replica) - now if state == EJECTED else 0.0
    return {
        "id": record.id,
        "tier": record.tier,
        "address": f"{record.address}:{record.port}",
        "model": record.model,
        "precision": record.precision,
        "region": record.region,
        "state": state,
        "queue": replica.queue_depth,
        "batch": replica.active,
        "capacity": record.capacity,
        "outstanding": ledger.outstanding(record.id),
        "pace_token_ms": round(replica.pace.token_ms(rows), 2) if replica.pace.known else None,
        "recent_token_ms": round(ledger.recent_token_ms(record.id, now), 2) or None,
        "ttft_p90_ms": round(replica.recent_ttft_p90_ms, 1),
        "rtt_ms": None if replica.rtt_ms is None else round(replica.rtt_ms, 2),
        "cost_per_hour": record.cost_per_hour,
        "ejected_for_s": round(max(0.0, ejected_for), 1),
        "consecutive_failures": outliers.consecutive_failures(replica),
    }


def replica_rows(dataplane: RouterDataPlane) -> list[dict]:
    now = time.monotonic()
    outliers, ledger = dataplane.policy.outliers, dataplane.ledger
    rows = []
    for replica in dataplane.view.replicas():
        state = EJECTED if outliers.ejected(replica) else DRAINING if replica.draining else SERVING
        rows.append(replica_row(replica, state, ledger, outliers, now))
    rows += [replica_row(r, LEAVING, ledger, outliers, now) for r in dataplane.view.leaving()]
    tier_rank = {tier: index for index, tier in enumerate(TIERS)}
    return sorted(rows, key=lambda row: (tier_rank.get(row["tier"], len(TIERS)), row["id"]))


def tier_rows(dataplane: RouterDataPlane, replicas: list[dict]) -> list[dict]:
    rows = []
    for tier in TIERS:
        members = [r for r in replicas if r["tier"] == tier]
        states = Counter(r["state"] for r in members)
        signal = dataplane.scaling.tiers[tier]
        rows.append(
            {
                "tier": tier,
                "replicas": len(members),
                **{state: states.get(state, 0) for state in (SERVING, DRAINING, EJECTED, LEAVING)},
                "queue": sum(r["queue"] for r in members),
                "batch": sum(r["batch"] for r in members),
                "capacity": sum(r["capacity"] for r in members),
                "cost_per_hour": round(sum(r["cost_per_hour"] for r in members if r["state"] != LEAVING), 4),
                "arrivals_per_s": round(signal.arrivals_per_s, 2),
                "forecast_per_s": round(signal.forecast_per_s, 2),
                "desired_replicas": signal.desired,
                "scaling_driver": signal.driver,
                "request_ms": round(signal.request_ms, 1),
                "slots_per_replica": round(signal.slots_per_replica, 2),
            }
        )
    return rows


def mix(buckets: list[MinuteBucket]) -> dict:
    """Calls by class and tier over the window, and per minute by tier (requests no replica took: tier none)."""
    totals: Counter[tuple[str, str]] = Counter()
    for bucket in buckets:
        totals.update(bucket.sent)
    by_class: dict[str, dict[str, int]] = {}
    for (request_class, tier), count in sorted(totals.items()):
        by_class.setdefault(request_class, {})[tier] = count
    per_minute = []
    for bucket in buckets:
        by_tier: Counter[str] = Counter()
        for (_, tier), count in bucket.sent.items():
            by_tier[tier] += count
        per_minute.append({"minute_start": bucket.minute * 60, "by_tier": dict(by_tier)})
    return {"by_class": by_class, "per_minute": per_minute, "tiers": [*TIERS, NO_TIER]}


def outcomes(buckets: list[MinuteBucket], realtime_ttft_ms: float) -> tuple[dict, dict]:
    """The success rate and the first-token percentiles of the window, each against its target."""
    answered = sum(b.answered for b in buckets)
    failed = sum(b.failed_calls - b.retried + b.refused for b in buckets)
    decided = answered + max(0, failed)
    rate = answered / decided if decided else None
    success = {
        "rate": rate,
        "target": SUCCESS_TARGET,
        "met": None if rate is None else rate >= SUCCESS_TARGET,
        "answered": answered,
        "failed": max(0, failed),
        "refused": sum(b.refused for b in buckets),
        "retried": sum(b.retried for b in buckets),
        "cancelled": sum(b.cancelled for b in buckets),
    }
    histograms = merged_ttft(buckets)
    by_class = {
        name: {
            "count": h.count,
            "p50_ms": _round(h.quantile(0.5)),
            "p90_ms": _round(h.quantile(0.9)),
            "p99_ms": _round(h.quantile(0.99)),
        }
        for name, h in sorted(histograms.items())
    }
    realtime = by_class.get("REALTIME", {}).get("p99_ms")
    ttft = {
        "by_class": by_class,
        "target_class": "REALTIME",
        "target_p99_ms": realtime_ttft_ms,
        "p99_ms": realtime,
        "all_p99_ms": by_class.get(ALL, {}).get("p99_ms"),
        "met": None if realtime is None else realtime <= realtime_ttft_ms,
    }
    return success, ttft


def cost(buckets: list[MinuteBucket], covered_s: float, replicas: list[dict]) -> dict:
    tokens: Counter[str] = Counter()
    for bucket in buckets:
        tokens.update(bucket.tokens_by_tier)
    tiers = {}
    for tier in TIERS:
        prices = [r["cost_per_hour"] for r in replicas if r["tier"] == tier and r["state"] != LEAVING]
        if prices:
            tiers[tier] = TierCost(len(prices), sum(prices) / len(prices))
    return provisioned_cost(tokens, covered_s, tiers)


def spillovers(buckets: list[MinuteBucket]) -> list[dict]:
    totals: Counter[tuple[str, str, str]] = Counter()
    for bucket in buckets:
        totals.update(bucket.spillovers)
    return [
        {"from_tier": source, "to_tier": target, "reason": reason, "count": count}
        for (source, target, reason), count in totals.most_common()
    ]


def status_document(dataplane: RouterDataPlane, minutes: int | None = None, workers: int = 1) -> dict:
    books: StatusBooks = dataplane.status
    dataplane.view.refresh()
    buckets = books.recent(minutes)
    covered_s = books.covered_s(minutes)
    replicas = replica_rows(dataplane)
    success, ttft = outcomes(buckets, dataplane.policy.realtime_ttft_ms)
    return {
        "generated_at": time.time(),
        "router": {
            "pid": os.getpid(),
            "workers": workers,
            "scope": "all calls" if workers == 1 else f"this worker's share of calls (1 of {workers} processes)",
            "uptime_s": round(time.time() - books.started_at, 1),
            "discovery_healthy": dataplane.view.source.healthy,
            "discovery_staleness_s": round(dataplane.view.source.staleness_s(), 1),
        },
        "window": {"minutes": minutes or books.minutes, "covered_s": round(covered_s, 1)},
        "tiers": tier_rows(dataplane, replicas),
        "replicas": replicas,
        "mix": mix(buckets),
        "spillovers": spillovers(buckets),
        "success": success,
        "ttft": ttft,
        "cost": cost(buckets, covered_s, replicas),
        "last_failures": list(books.last_failures),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
