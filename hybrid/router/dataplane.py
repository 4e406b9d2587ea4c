"""The router's data plane, transport-free: route one request, stream the replica's chunks back.

The gRPC servicer and the OpenAI-compatible HTTP front are thin adapters over ``RouterDataPlane``. It asks
the policy (``hybrid.router.policy``) for a replica, sends the request with the caller's remaining budget,
streams chunk by chunk, and retries on another replica when one fails before its first token. It keeps no
figures itself: it tells the call hooks (``hybrid.router.ledger``) what happens to each call, and they
keep the calls in flight, the outlier counts and the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import grpc

from hybrid.errors import HybridError, ModelNotFoundError, OverloadedError, UnavailableError
from hybrid.protocol import GenerationRequest
from hybrid.router import defaults
from hybrid.router.keyguard import Grant, KeyGuard
from hybrid.router.ledger import HookChain
from hybrid.router.liveness import LivenessWatch
from hybrid.router.metrics import RouterMetrics
from hybrid.router.policy.policy import Decision, RoutingPolicy
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.replica_call import CALLER_CODES, ReplicaFailed, stream_call
from hybrid.router.usage import UsageMeter
from hybrid.router.view import ReplicaView
from hybrid.security.keys import KeyEntry, KeyStore
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
        keys: KeyStore | None = None,
        replica_share: float = 1.0,
    ):
        """``keys``: the API keys callers must present (None serves anyone); ``replica_share``: the part of each
        replica's cost this process charges its keys (1 / the router's worker processes)."""
        self.view = view
        self.policy = policy or RoutingPolicy()
        self.metrics = metrics or RouterMetrics()
        self.max_attempts = max_attempts
        self.ledger = self.policy.ledger
        outliers = self.policy.outliers
        outliers.peers = view.tier_peers
        outliers.on_ejected = self._ejected
        self.liveness = LivenessWatch(self.ledger, outliers, view.replicas, stall_s)
        self.guard = KeyGuard(keys) if keys is not None else None
        self.usage = UsageMeter(self.metrics.registry, replica_share) if keys is not None else None
        hooks = [self.ledger, outliers, self.metrics, self.liveness]
        if self.guard is not None and self.usage is not None:
            self.guard.on_refused = self.usage.refused
            self.guard.on_unauthenticated = self.usage.unauthenticated.inc
            hooks += [self.guard, self.usage]
        self.hooks = HookChain(hooks)
        # A replica that cannot answer its load poll is unreachable; one that answers lives.
        view.on_poll_failure = lambda state, error: outliers.record_failure(state, view.tier_peers(state), True)
        view.on_poll_success = self.liveness.heard
        view.open_calls = self.ledger.outstanding
        view.abandon_calls = self._abandon_calls
        view.watchers.append(self.liveness.check)

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
        self.metrics.observe_discovery(source.healthy, source.staleness_s(), self.view.replicas())

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
        if self.guard is None:
            return self._route(request, raw_request, None)
        return self._admitted(self.guard, request, raw_request, caller)

    async def _admitted(
        self, guard: KeyGuard, request: GenerationRequest, raw_request: bytes, caller: KeyEntry | None
    ) -> AsyncGenerator[bytes, None]:
        grant = guard.admit(caller or guard.identify(None), request)
        try:
            async with aclosing(self._route(request, raw_request, grant)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            grant.release()  # however the request ended: answered, failed, cancelled or timed out

    async def _route(
        self, request: GenerationRequest, raw_request: bytes, grant: Grant | None
    ) -> AsyncGenerator[bytes, None]:
        self._check_model(request)
        self.policy.observe(request)
        failures: dict[str, ReplicaFailed] = {}
        for attempt in range(self.max_attempts):
            decision = self.policy.choose(request, self.view.replicas(), exclude=frozenset(failures), explain=False)
            state = decision.chosen
            if state is None:
                self.metrics.refused(decision)
                raise _refusal(failures, decision.retry_after_ms)
            self.metrics.routed(decision, attempt)
            streamed = False
            try:
                client = self.view.replica_clients.get(state.replica_id)
                call = stream_call(client, state, request, raw_request, decision.request_class.value, self.hooks, grant)
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
        raise _refusal(failures, defaults.ROUTING_NO_REPLICA_RETRY_AFTER_MS, gave_up=True)

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
