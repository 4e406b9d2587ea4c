"""The router's data plane, transport-free: route one request, stream the replica's chunks back.

The gRPC servicer and the OpenAI-compatible HTTP front are thin adapters over ``RouterDataPlane``.
The policy (``hybrid.router.routing``) picks the replica; this class carries the call out: it sends the
request with the caller's remaining budget, streams chunk by chunk, retries on another replica when
one fails before its first token, feeds the outlier detector, and counts everything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hybrid import constants, wire
from hybrid.errors import HybridError, ModelNotFoundError, OverloadedError, UnavailableError
from hybrid.protocol import GenerationRequest
from hybrid.router.routing import Decision, ReplicaState, RoutingPolicy
from hybrid.router.view import ReplicaView
from hybrid.v1 import inference_pb2 as pb

log = logging.getLogger("hybrid.router")

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# Answers that say the request itself is wrong or over: another replica would answer the same.
# CANCELLED is not one: a caller that hangs up cancels this coroutine; a CANCELLED status comes
# from a replica that is going away (its server stopped mid-call), so another one may serve.
_CALLER_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


class ReplicaFailed(HybridError):
    """A replica's own error status, passed on to the caller unchanged."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after_ms: int | None = None):
        super().__init__(message)
        self.code = code
        self.retry_after_ms = retry_after_ms


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "hybrid_router_requests",
            "Requests by tier, class and outcome.",
            ["tier", "request_class", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "hybrid_router_request_seconds",
            "Arrival to last chunk.",
            ["tier", "request_class"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "hybrid_router_time_to_first_token_seconds",
            "Arrival to first chunk.",
            ["tier", "request_class"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.spillovers = Counter(
            "hybrid_router_spillovers",
            "Requests served by a later tier than their first choice.",
            ["from_tier", "to_tier"],
            registry=r,
        )
        self.retries = Counter(
            "hybrid_router_retries", "Requests resent after a replica failed before its first token.", registry=r
        )
        self.ejections = Counter("hybrid_router_ejections", "Replicas ejected as outliers.", ["tier"], registry=r)
        self.replicas = Gauge("hybrid_router_replicas", "Known replicas by tier.", ["tier"], registry=r)
        self.discovery_staleness = Gauge(
            "hybrid_router_discovery_staleness_seconds", "Seconds since discovery last answered.", registry=r
        )
        self.discovery_healthy = Gauge(
            "hybrid_router_discovery_healthy",
            "1 while discovery answers; 0 while serving from the last view.",
            registry=r,
        )


def _tier_name(state: ReplicaState | None) -> str:
    return state.record.tier if state is not None else "none"


class RouterDataPlane:
    def __init__(
        self,
        view: ReplicaView,
        policy: RoutingPolicy | None = None,
        metrics: RouterMetrics | None = None,
        max_attempts: int = constants.ROUTER_MAX_ATTEMPTS,
    ):
        self.view = view
        self.policy = policy or RoutingPolicy()
        self.metrics = metrics or RouterMetrics()
        self.max_attempts = max_attempts
        view.on_poll_failure = lambda state, error: self._failed(state)

    def explain(self, request: GenerationRequest) -> Decision:
        """The decision the next identical request would get; nothing is sent or counted."""
        return self.policy.choose(request, self.view.replicas())

    def _failed(self, state: ReplicaState) -> None:
        peers = [r for r in self.view.replicas() if r.record.tier == state.record.tier]
        if self.policy.outliers.record_failure(state, peers):
            self.metrics.ejections.labels(state.record.tier).inc()
            log.warning("ejected %s after repeated failures", state.record.id)

    def observe_discovery(self) -> None:
        source = self.view.source
        self.metrics.discovery_healthy.set(1 if source.healthy else 0)
        self.metrics.discovery_staleness.set(min(source.staleness_s(), 1e9))
        for tier in ("edge", "private", "public"):
            self.metrics.replicas.labels(tier).set(sum(1 for r in self.view.replicas() if r.record.tier == tier))

    async def generate(
        self, request: GenerationRequest, message: pb.GenerateRequest
    ) -> AsyncIterator[pb.GenerateResponse]:
        """Streams the answer from the replica the policy picks. Raises HybridError subclasses."""
        self._check_model(request)
        self.policy.observe(request)
        tried: set[str] = set()
        last_error, last_code = "", None
        for attempt in range(self.max_attempts):
            decision = self.policy.choose(request, self.view.replicas(), exclude=frozenset(tried))
            request_class = decision.request_class.value
            state = decision.chosen
            if state is None:
                self.metrics.requests.labels("none", request_class, "refused").inc()
                if tried and last_code != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise UnavailableError(f"every replica tried failed before answering (last: {last_error}); retry")
                raise OverloadedError("no tier has room for this request within its deadline", decision.retry_after_ms)
            first_choice = decision.tier_order[0].name.lower()
            if state.record.tier != first_choice:
                self.metrics.spillovers.labels(first_choice, state.record.tier).inc()
            if attempt:
                self.metrics.retries.inc()
            streamed = False
            try:
                async for response in self._call(state, request, message, request_class):
                    streamed = True
                    yield response
                return
            except ReplicaFailed as error:
                last_error, last_code = f"{state.record.id}: {error.code.name}: {error.message}", error.code
                if streamed or error.code in _CALLER_CODES:
                    raise
                tried.add(state.record.id)
                log.info("retrying %s elsewhere: %s", request.request_id, last_error)
        raise UnavailableError(f"gave up after {self.max_attempts} replicas failed (last: {last_error}); retry")

    def _check_model(self, request: GenerationRequest) -> None:
        """A model no replica serves is the caller's mistake (NOT_FOUND), not a full tier to retry later."""
        models = {r.record.model for r in self.view.replicas()}
        if request.model and models and request.model not in models:
            raise ModelNotFoundError(
                f"model {request.model!r} is not served here: the replicas serve {', '.join(sorted(models))}"
            )

    async def _call(
        self, state: ReplicaState, request: GenerationRequest, message: pb.GenerateRequest, request_class: str
    ) -> AsyncIterator[pb.GenerateResponse]:
        tier = _tier_name(state)
        stub = self.view.stubs[state.record.id]
        remaining = request.remaining_s()
        if remaining is not None and remaining <= 0:
            raise ReplicaFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the request was sent")
        began = time.monotonic()
        call_id = state.begin_call(began, None if remaining is None else began + remaining, request.max_new_tokens)
        call = stub.Generate(message, timeout=remaining, metadata=wire.call_metadata(state.record.application, remaining))
        outcome = "cancelled"  # unless the stream ends or fails below: the caller went away
        first_seen = finished = False
        try:
            async for response in call:
                finished = finished or bool(response.finish_reason)
                state.streamed(call_id, time.monotonic(), len(response.token_ids))
                if not first_seen:
                    first_seen = True
                    self.metrics.ttft.labels(tier, request_class).observe(time.monotonic() - request.arrived_at)
                yield response
            if not finished:
                outcome = "cut_short"
                self._failed(state)
                raise ReplicaFailed(
                    grpc.StatusCode.UNAVAILABLE, "the replica's stream ended without its final chunk (it went away)"
                )
            outcome = "ok"
            self.policy.outliers.record_success(state)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            outcome = code.name.lower()
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                pass  # full, not failing: the policy steers around it through its load
            elif code not in _CALLER_CODES:
                self._failed(state)
            raise ReplicaFailed(code, error.details() or code.name, wire.retry_after_ms(error.trailing_metadata())) from None
        finally:
            state.end_call(call_id, time.monotonic(), answered=outcome == "ok")
            if outcome != "ok":
                call.cancel()  # a cancelled caller or a failed stream releases the replica's slot now
            self.metrics.requests.labels(tier, request_class, outcome).inc()
            self.metrics.latency.labels(tier, request_class).observe(time.monotonic() - request.arrived_at)

    def load(self) -> pb.LoadReport:
        """The router's own load: the sum over the replicas it knows."""
        replicas = self.view.replicas()
        return pb.LoadReport(
            replica_id="router",
            queue_depth=sum(r.queue_depth for r in replicas),
            active=sum(r.active for r in replicas),
            capacity=sum(r.record.capacity for r in replicas),
        )
