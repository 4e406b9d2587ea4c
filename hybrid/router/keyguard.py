"""API keys at the router: who may call, at which priorities, and how much; the one place both shells ask.

The gRPC servicer and the OpenAI front hand the caller's ``authorization`` value to the data plane, which
asks ``KeyGuard``: ``identify`` (no valid key: UNAUTHENTICATED), then ``admit`` for each request (a priority
the key lacks: PERMISSION_DENIED; a limit reached: RESOURCE_EXHAUSTED with the time until it frees). An
admitted request holds a ``Grant`` until it ends, however it ends; the guard is also a call hook
(``hybrid.router.ledger.CallHooks``), charging the key's tokens as the answer streams.

Limits are token buckets, per key and per router process (each of ``--workers N`` keeps its own, so the
whole router allows up to N times a key's rate when the kernel spreads its connections evenly):

- requests: ``requests_per_s`` refills a bucket of ``burst`` requests; a request takes one.
- tokens: ``tokens_per_min`` refills a bucket of one minute's tokens. A request's prompt is charged when it
  is admitted (estimated from its characters, corrected by the count its replica reports) and its answer's
  tokens as they stream, so a long answer may overdraw the bucket; new requests wait until it refills.
- streams: requests in flight at once; the slot frees when the request ends, cancelled, failed or timed out.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from hybrid.errors import OverloadedError
from hybrid.protocol import GenerationRequest
from hybrid.router.ledger import Call, CallHooks, Outcome
from hybrid.security.keys import (
    KeyEntry,
    KeyLimits,
    KeyStore,
    PermissionDeniedError,
    UnauthenticatedError,
    bearer_key,
)

log = logging.getLogger("hybrid.router.keys")

# What the router counts a token of prompt as before its replica says: about four characters of English.
CHARS_PER_TOKEN = 4
# When a key's streams are all taken there is no refill to wait for: a hint of when to look again.
STREAM_RETRY_AFTER_MS = 1000
MISSING_KEY = "no API key: send the header 'authorization: Bearer <key>'"
UNKNOWN_KEY = "the API key is not valid (unknown or revoked): check the key, or ask for a new one"


class KeyLimitError(OverloadedError):
    """One of a key's limits is reached; ``retry_after_ms`` says when it frees."""


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate_per_s``. Spending may overdraw it: ``wait_s`` then says how long."""

    def __init__(self, rate_per_s: float, capacity: float, now: float):
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self.level = capacity
        self.updated = now

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` is in the bucket; 0 when it is now."""
        self.spend(0, now)
        missing = amount - self.level
        return 0.0 if missing <= 0 else missing / self.rate_per_s

    def spend(self, amount: float, now: float) -> None:
        # Refilled for the time since it was last touched, then spent: called for every chunk, so inline.
        level = self.level + (now - self.updated) * self.rate_per_s
        self.level = (level if level < self.capacity else self.capacity) - amount
        self.updated = now


@dataclass
class Allowance:
    """One key's buckets and open streams in this router process."""

    limits: KeyLimits
    requests: TokenBucket | None
    tokens: TokenBucket | None
    streams_open: int = 0

    @classmethod
    def of(cls, limits: KeyLimits, now: float) -> Allowance:
        requests = (
            TokenBucket(limits.requests_per_s, limits.burst_size(), now) if limits.requests_per_s is not None else None
        )
        tokens = (
            TokenBucket(limits.tokens_per_min / 60.0, limits.tokens_per_min, now)
            if limits.tokens_per_min is not None
            else None
        )
        return cls(limits, requests, tokens)


@dataclass(eq=False)
class Grant:
    """One admitted request: holds a stream slot until ``release`` and charges its tokens to its key."""

    key: KeyEntry
    allowance: Allowance
    prompt_estimate: int
    clock: Callable[[], float]
    prompt_settled: bool = False
    released: bool = False

    def charge(self, tokens: int, now: float) -> None:
        bucket = self.allowance.tokens
        if bucket is not None and tokens:
            bucket.spend(tokens, now)

    def settle_prompt(self, prompt_tokens: int) -> None:
        """Replaces the prompt's estimate by the count its replica reported (once per request)."""
        if self.prompt_settled:
            return
        self.prompt_settled = True
        if self.allowance.tokens is not None:
            self.allowance.tokens.spend(prompt_tokens - self.prompt_estimate, self.clock())

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.allowance.streams_open -= 1


def estimated_prompt_tokens(request: GenerationRequest) -> int:
    characters = len(request.prompt or "") + sum(len(m.get("content", "")) for m in request.messages or ())
    return max(1, math.ceil(characters / CHARS_PER_TOKEN))


class KeyGuard(CallHooks):
    def __init__(self, store: KeyStore, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.clock = clock
        self._allowances: dict[str, Allowance] = {}
        # Told of each refusal of a known key (name, reason), and of each call without a valid key, for the metrics.
        self.on_refused: Callable[[str, str], None] = lambda name, reason: None
        self.on_unauthenticated: Callable[[], None] = lambda: None

    def identify(self, authorization: str | None) -> KeyEntry:
        """The key of an ``authorization`` value. Raises UnauthenticatedError; the key itself is never logged."""
        key = bearer_key(authorization)
        entry = self.store.identify(key) if key is not None else None
        if entry is None:
            self.on_unauthenticated()
            raise UnauthenticatedError(MISSING_KEY if key is None else UNKNOWN_KEY)
        return entry

    def require_admin(self, authorization: str | None) -> KeyEntry:
        entry = self.identify(authorization)
        if not entry.admin:
            self.on_refused(entry.name, "admin")
            raise PermissionDeniedError(f"key {entry.name!r} is not an admin key: this call needs one")
        return entry

    def _allowance(self, entry: KeyEntry, now: float) -> Allowance:
        allowance = self._allowances.get(entry.name)
        if allowance is None:
            allowance = self._allowances[entry.name] = Allowance.of(entry.limits, now)
        # The same limits object until the file is read again: compared by value only then.
        elif allowance.limits is not entry.limits and allowance.limits != entry.limits:
            # New limits start with full buckets. Changed in place: the requests in flight hold this allowance,
            # and their streams still count until they end.
            fresh = Allowance.of(entry.limits, now)
            allowance.limits, allowance.requests, allowance.tokens = fresh.limits, fresh.requests, fresh.tokens
        return allowance

    def admit(self, entry: KeyEntry, request: GenerationRequest) -> Grant:
        """Admits one request of ``entry``'s. Raises PermissionDeniedError or KeyLimitError."""
        if not entry.allows(request.priority):
            self.on_refused(entry.name, "priority")
            raise PermissionDeniedError(
                f"key {entry.name!r} may not send {request.priority.name} requests (it may send "
                f"{', '.join(entry.priorities)}): send one of those, or ask for a key that allows "
                f"{request.priority.name.lower()}"
            )
        now = self.clock()
        allowance = self._allowance(entry, now)
        limits = allowance.limits
        if limits.streams is not None and allowance.streams_open >= limits.streams:
            self._refuse(entry, "streams", f"its {limits.streams} concurrent streams are in use", STREAM_RETRY_AFTER_MS)
        if allowance.tokens is not None and (wait_s := allowance.tokens.wait_s(1, now)) > 0:
            self._refuse(entry, "tokens", f"its {limits.tokens_per_min} tokens per minute are spent", wait_s * 1000)
        if allowance.requests is not None and (wait_s := allowance.requests.wait_s(1, now)) > 0:
            self._refuse(entry, "requests", f"it sent more than {limits.requests_per_s:g} requests/s", wait_s * 1000)
        if allowance.requests is not None:
            allowance.requests.spend(1, now)
        estimate = estimated_prompt_tokens(request)
        if allowance.tokens is not None:
            allowance.tokens.spend(estimate, now)
        allowance.streams_open += 1
        return Grant(entry, allowance, estimate, self.clock)

    def _refuse(self, entry: KeyEntry, reason: str, what: str, wait_ms: float) -> None:
        self.on_refused(entry.name, reason)
        raise KeyLimitError(f"key {entry.name!r} is over its limit: {what}", max(1, math.ceil(wait_ms)))

    def streams_open(self, name: str) -> int:
        allowance = self._allowances.get(name)
        return allowance.streams_open if allowance is not None else 0

    # --- CallHooks ---
    def chunk(self, call: Call, tokens: int, now: float) -> None:
        if call.grant is not None:
            call.grant.charge(tokens, now)

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        if call.grant is not None and call.reported_usage is not None:
            call.grant.settle_prompt(call.reported_usage[0])
