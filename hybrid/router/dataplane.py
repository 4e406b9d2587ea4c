"""The router's data plane, transport-free: route one request, stream the replica's chunks back.

The gRPC servicer and the OpenAI-compatible HTTP front are thin adapters over ``RouterDataPlane``. It asks
the policy (``hybrid.router.policy``) for a replica, sends the request with the caller's remaining budget,
streams chunk by chunk, and retries on another replica when one fails before its first token. It keeps no
figures itself: it tells the call hooks (``hybrid.router.ledger``) what happens to each call, and they
keep the calls in flight, the outlier counts and the metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import grpc

from hybrid.errors import DeadlineExceededError, HybridError, ModelNotFoundError, OverloadedError, UnavailableError
from hybrid.protocol import GenerationRequest
from hybrid.router import defaults
from hybrid.router.keyguard import Grant, KeyGuard
from hybrid.router.ledger import HookChain
from hybrid.router.liveness import LivenessWatch
from hybrid.router.metrics import RouterMetrics
from hybrid.router.policy.policy import Decision, RoutingPolicy
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.replica_call import CALLER_CODES, ReplicaFailed, stream_call
from hybrid.router.request_log import RequestLog
from hybrid.router.scaling import ScalingSignal
from hybrid.router.status.books import StatusBooks
from hybrid.router.tracing import RequestTrace
from hybrid.router.usage import UsageMeter
from hybrid.router.view import ReplicaView
from hybrid.security.keys import KeyEntry, KeyStore
from hybrid.telemetry import tracing
from hybrid.v1 import inference_pb2 as pb

log = logging.getLogger("hybrid.router")


class RouterDataPlane:
    def __init__(
        self,
        view: ReplicaView,
        policy: RoutingPolicy | None = None,
        metrics: RouterMetrics | None = None,
        max_attempts: int = defaults.ROUTER_MAX_ATTEMPTS,
        stall_s: float = defaults.ROUTER_STALL_S,
        request_log: RequestLog | None = None,
        keys: KeyStore | None = None,
        replica_share: float = 1.0,
    ):
        """``request_log``: where a line per request goes (None writes none); ``keys``: the API keys callers must
        present (None serves anyone); ``replica_share``: the part of each replica's cost this process charges its
        keys (1 / the router's worker processes)."""
        self.view = view
        self.policy = policy or RoutingPolicy()
        self.metrics = metrics or RouterMetrics()
        self.max_attempts = max_attempts
        self.ledger = self.policy.ledger
        outliers = self.policy.outliers
        outliers.peers = view.tier_peers
        outliers.on_ejected = self._ejected
        self.liveness = LivenessWatch(self.ledger, outliers, view.replicas, stall_s)
        self.request_log = request_log
        # What the status page shows (``hybrid.router.status``) and the scaling signal: books of their own.
        self.status = StatusBooks(outliers, view.replicas)
        self.scaling = ScalingSignal(outliers, view.replicas, self.metrics.registry)
        self.guard = KeyGuard(keys) if keys is not None else None
        self.usage = UsageMeter(self.metrics.registry, replica_share) if keys is not None else None
        hooks = [self.ledger, outliers, self.metrics, self.liveness, self.status, self.scaling]
        if self.guard is not None and self.usage is not None:
            self.guard.on_refused = self.usage.refused
            self.guard.on_unauthenticated = self.usage.unauthenticated.inc
            hooks += [self.guard, self.usage]
        self.hooks = HookChain(hooks if request_log is None else [*hooks, request_log])
        # A replica that cannot answer its load poll is unreachable; one that answers lives.
        view.on_poll_failure = lambda state, error: outliers.record_failure(state, view.tier_peers(state), True)
        view.on_poll_success = self.liveness.heard
        view.open_calls = self.ledger.outstanding
        view.abandon_calls = self._abandon_calls
        view.watchers.append(self.liveness.check)

    def _routed(self, decision: Decision, attempt: int, failures: dict[str, ReplicaFailed]) -> None:
        self.metrics.routed(decision, attempt)
        last_failure = next(reversed(failures.values())).code.name.lower() if failures else ""
        self.status.routed(decision, attempt, last_failure)
        self.scaling.routed(decision, attempt)

    def _refused(self, request: GenerationRequest, decision: Decision, attempt: int, refusal: HybridError) -> None:
        self.metrics.refused(decision)
        self.status.refused(decision, attempt, refusal)
        self.scaling.refused(decision, attempt)
        if self.request_log is not None:
            self.request_log.refused(request, decision, time.monotonic())

    def _abandon_calls(self, replica_id: str, reason: str) -> None:
        for call in self.ledger.in_flight(replica_id):
            call.abandon(reason)

    def explain(self, request: GenerationRequest) -> Decision:
        """The decision the next identical request would get; nothing is sent or counted."""
        return self.policy.choose(request, self.view.replicas())

    def _ejected(self, state: ReplicaState) -> None:
        self.metrics.ejected(state)
        log.warning("ejected %s after repeated failures", state.replica_id)

    def observe_discovery(self) -> None:
        source = self.view.source
        self.metrics.observe_discovery(
            source.healthy, source.staleness_s(), self.view.replicas(), self.policy.outliers.ejected, self.ledger
        )

    def caller(self, authorization: str | None) -> KeyEntry | None:
        """The key of a caller's ``authorization`` value (None where keys are off). Raises UnauthenticatedError."""
        return self.guard.identify(authorization) if self.guard is not None else None

    def require_admin(self, authorization: str | None) -> None:
        """Raises UnauthenticatedError or PermissionDeniedError unless the caller holds an admin key (or keys
        are off)."""
        if self.guard is not None:
            self.guard.require_admin(authorization)

    def relay(
        self, request: GenerationRequest, raw_request: bytes, caller: KeyEntry | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Streams the answer from the replica the policy picks, each chunk as the replica's bytes; ``raw_request``
        is ``request`` as it came on the wire, sent on as is. ``caller`` is the key ``caller()`` found; where keys
        are on, the request must be admitted for it. Raises HybridError subclasses."""
        tracer = tracing.tracer()
        if self.guard is None and tracer is None:
            return self._route(request, raw_request, None, None)
        trace = RequestTrace(tracer, request) if tracer is not None else None
        return self._admitted_and_traced(request, raw_request, caller, trace)

    async def _admitted_and_traced(
        self, request: GenerationRequest, raw_request: bytes, caller: KeyEntry | None, trace: RequestTrace | None
    ) -> AsyncGenerator[bytes, None]:
        grant = None
        try:
            if self.guard is not None:
                grant = self.guard.admit(caller or self.guard.identify(None), request)
            async with aclosing(self._route(request, raw_request, grant, trace)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except BaseException as error:
            if trace is not None:
                trace.end(error)
            raise
        else:
            if trace is not None:
                trace.end(None)
        finally:
            if grant is not None:
                grant.release()  # however the request ended: answered, failed, cancelled or timed out

    async def _route(
        self, request: GenerationRequest, raw_request: bytes, grant: Grant | None, trace: RequestTrace | None
    ) -> AsyncGenerator[bytes, None]:
        self._check_model(request)
        self.policy.observe(request)
        failures: dict[str, ReplicaFailed] = {}
        for attempt in range(self.max_attempts):
            decision = self.policy.choose(request, self.view.replicas(), exclude=frozenset(failures), explain=False)
            if trace is not None:
                trace.decided(decision, attempt)
            state = decision.chosen
            if state is None:
                refusal = (
                    _refusal(failures, decision.retry_after_ms)
                    if decision.impossible_ms is None
                    else _impossible(request, decision.impossible_ms)
                )
                self._refused(request, decision, attempt, refusal)
                raise refusal
            self._routed(decision, attempt, failures)
            streamed = False
            try:
                client = self.view.replica_clients.get(state.replica_id)
                call = stream_call(
                    client,
                    state,
                    request,
                    raw_request,
                    decision.request_class.value,
                    self.hooks,
                    attempt=attempt,
                    attempts_left=self.max_attempts - attempt - 1,
                    decision=decision,
                    trace=trace,
                    grant=grant,
                )
                async with aclosing(call) as chunks:
                    async for chunk in chunks:
                        streamed = True
                        yield chunk
                return
            except ReplicaFailed as error:
                if streamed or error.code in CALLER_CODES:
                    raise
                failures[state.replica_id] = error
                log.info("retrying %s elsewhere: %s: %s", request.request_id, state.replica_id, error.message)
        refusal = _refusal(failures, defaults.ROUTING_NO_REPLICA_RETRY_AFTER_MS, gave_up=True)
        self.status.gave_up(decision, refusal)
        self.scaling.gave_up(decision)
        raise refusal

    async def generate(
        self, request: GenerationRequest, message: pb.GenerateRequest, caller: KeyEntry | None = None
    ) -> AsyncIterator[pb.GenerateResponse]:
        """``relay`` for callers that read the chunks (the OpenAI front). Raises HybridError subclasses."""
        async with aclosing(self.relay(request, message.SerializeToString(), caller)) as chunks:
            async for chunk in chunks:
                yield pb.GenerateResponse.FromString(chunk)

    def _check_model(self, request: GenerationRequest) -> None:
        """A model no replica serves is the caller's mistake (NOT_FOUND), not a full tier to retry later."""
        models = {r.record.model for r in self.view.replicas()}
        if request.model and models and request.model not in models:
            raise ModelNotFoundError(
                f"model {request.model!r} is not served here: the replicas serve {', '.join(sorted(models))}"
            )

    def load(self) -> pb.LoadReport:
        """The router's own load: the sum over the replicas it knows."""
        replicas = self.view.replicas()
        return pb.LoadReport(
            replica_id="router",
            queue_depth=sum(r.queue_depth for r in replicas),
            active=sum(r.active for r in replicas),
            capacity=sum(r.record.capacity for r in replicas),
        )


def _impossible(request: GenerationRequest, soonest_ms: float) -> DeadlineExceededError:
    remaining_s = request.remaining_s() or 0.0
    return DeadlineExceededError(
        f"no tier can answer {request.max_new_tokens} new tokens within the {remaining_s * 1000:.0f} ms left of "
        f"the deadline: the fastest replica would take about {soonest_ms:.0f} ms even idle. Raise the deadline or "
        "lower max_new_tokens; retrying as is cannot succeed"
    )


def _refusal(failures: dict[str, ReplicaFailed], retry_after_ms: int, gave_up: bool = False) -> HybridError:
    """What the caller gets when no replica answered: full everywhere, or failing."""
    last = next(reversed(failures.items()), None)
    if last is None or last[1].code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # Full everywhere: the soonest a full replica said it would have room, else the policy's guess.
        hints = [f.retry_after_ms for f in failures.values() if f.retry_after_ms]
        return OverloadedError(
            "no tier has room for this request within its deadline", min(hints, default=retry_after_ms)
        )
    replica_id, error = last
    tried = (
        f"gave up after {len(failures)} replicas failed" if gave_up else "every replica tried failed before answering"
    )
    return UnavailableError(f"{tried} (last: {replica_id}: {error.code.name}: {error.message}); retry")
