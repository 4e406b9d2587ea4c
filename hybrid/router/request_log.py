"""The router's request log: one JSON line per request, written as its answer ends (a call hook).

Each line says which request it was (id, class, the API key's name where keys are in use), where it went
and why (tier, replica, reason, the replicas tried before), what came of it (outcome, time to first token,
latency, tokens) and when; while the router traces, the id of the request's trace too. A request the router sends to another replica after a failure gets one line,
when its last try ends; a request refused because no tier had room gets one too.

It is off unless asked for (``--request-log``): on, a line costs the router about 60 microseconds of CPU
(JSON, the logging module, the write; 3 to 4% of what it spends on a request), and where the lines go (a
file that rotates, or stderr to a log collector) is the operator's call. ``--request-log-sample`` keeps that share of the requests, chosen at random, for a router
whose traffic would make a full log larger than it is useful.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from logging.handlers import WatchedFileHandler
from pathlib import Path

from hybrid.protocol import GenerationRequest
from hybrid.router.ledger import Call, CallHooks, Outcome, refusal
from hybrid.router.policy.policy import Decision

LOGGER_NAME = "hybrid.requests"
# A request whose next try never came (its deadline passed before it could be sent) leaves its tries here:
# beyond this many, the oldest are forgotten.
MAX_PENDING_RETRIES = 10_000


def open_log(destination: str) -> logging.Logger:
    """A logger of the request log's own, writing bare JSON lines to ``destination``: a file path, or '-' for stderr.

    A file is reopened when it is moved or removed (logrotate's rename), so it can be rotated while the router
    runs. The logger stands outside logging's hierarchy: the lines are data, not the router's messages, so
    they never reach the root logger's handlers, and two routers in one process (tests, `hybrid up`) each
    keep their own destination."""
    if destination == "-":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        path = Path(destination)
        if not path.parent.is_dir():
            raise ValueError(f"--request-log {destination}: folder {path.parent} does not exist; create it first")
        handler = WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger(LOGGER_NAME, logging.INFO)
    logger.addHandler(handler)
    return logger


class RequestLog(CallHooks):
    """Writes a request's line when its last call ends, or when it is refused; ``sample`` of them (0..1)."""

    def __init__(
        self, logger: logging.Logger, sample: float = 1.0, chance: Callable[[], float] = random.random
    ):
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"the request log's sample must be between 0 and 1, got {sample}")
        self.logger = logger
        self.sample = sample
        self._chance = chance
        # Replicas tried and failed for requests whose next try is under way: request id -> "replica: outcome".
        self._tried: dict[str, list[str]] = {}

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        if call.retried(outcome):
            if len(self._tried) >= MAX_PENDING_RETRIES:
                self._tried.pop(next(iter(self._tried)))
            self._tried.setdefault(call.request_id, []).append(f"{call.replica.replica_id}: {outcome.label}")
            return
        tried = self._tried.pop(call.request_id, None) if self._tried else None
        if not self._kept():
            return
        line = {
            "time": _now(),
            "request_id": call.request_id,
            "class": call.request_class,
            "key": call.grant.key.name if call.grant is not None else None,
            "tier": call.replica.record.tier,
            "replica": call.replica.replica_id,
            "reason": call.routing_reason(),
            "tried": tried or [],
            "outcome": outcome.label,
            "ttft_ms": None if call.first_token_at is None else _ms(call.first_token_at - call.arrived_at),
            "latency_ms": _ms(now - call.arrived_at),
            "tokens": call.tokens,
        }
        if call.trace is not None:
            line["trace_id"] = call.trace.trace_id()
        self.logger.info(json.dumps(line, separators=(",", ":")))

    def refused(self, request: GenerationRequest, decision: Decision, now: float) -> None:
        """The policy chose no replica for ``request``: no tier had room (RESOURCE_EXHAUSTED, with a retry hint),
        or none could finish within its deadline even idle (DEADLINE_EXCEEDED)."""
        tried = self._tried.pop(request.request_id, None) if self._tried else None
        if not self._kept():
            return
        outcome, reason = refusal(decision)
        line = {
            "time": _now(),
            "request_id": request.request_id,
            "class": decision.request_class.value,
            "key": None,
            "tier": None,
            "replica": None,
            "reason": reason,
            "tried": tried or [],
            "outcome": outcome,
            "ttft_ms": None,
            "latency_ms": _ms(now - request.arrived_at),
            "tokens": 0,
        }
        if outcome == "refused":
            line["retry_after_ms"] = decision.retry_after_ms
        self.logger.info(json.dumps(line, separators=(",", ":")))

    def close(self) -> None:
        """Flushes and closes where the lines go."""
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()

    def _kept(self) -> bool:
        return self.sample >= 1.0 or self._chance() < self.sample


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
