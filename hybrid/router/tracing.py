"""The router's spans of one request, made only while the process traces (``hybrid.telemetry.tracing``).

``hybrid.router.request`` spans the request at the router, child of the caller's ``traceparent``. Under it,
each try has a ``hybrid.route`` span (the routing decision: class, chosen tier and replica, and why) and a
``hybrid.stream`` span (the call to that replica, until its last chunk); the stream span's context travels
to the replica, whose own spans (``hybrid.engine.spans``) become its children.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hybrid.errors import HybridError
from hybrid.protocol import GenerationRequest
from hybrid.router.ledger import routing_reason
from hybrid.telemetry import tracing

if TYPE_CHECKING:
    from hybrid.router.ledger import Call, Outcome
    from hybrid.router.policy.policy import Decision
    from hybrid.router.policy.replica import ReplicaState


class RequestTrace:
    """One request's span at the router, and the spans of its tries under it."""

    def __init__(self, tracer, request: GenerationRequest):
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        self.tracer = tracer
        self.span = tracer.start_span(
            "hybrid.router.request",
            context=tracing.parent_of(request.trace_carrier),
            kind=SpanKind.SERVER,
            start_time=tracing.wall_ns(request.arrived_at),
            attributes={
                "hybrid.request_id": request.request_id,
                "hybrid.priority": request.priority.name,
                "hybrid.max_new_tokens": request.max_new_tokens,
            },
        )
        self.inside = trace.set_span_in_context(self.span)

    def decided(self, decision: Decision, attempt: int, started_ns: int) -> None:
        """The routing decision of try ``attempt``, which began at ``started_ns``."""
        chosen = decision.chosen
        attributes = {
            "hybrid.request_class": decision.request_class.value,
            "hybrid.attempt": attempt,
            "hybrid.tier_order": ",".join(t.name.lower() for t in decision.tier_order),
        }
        if chosen is None:
            attributes["hybrid.reason"] = "no tier has room"
            attributes["hybrid.retry_after_ms"] = decision.retry_after_ms
        else:
            attributes["hybrid.tier"] = chosen.record.tier
            attributes["hybrid.replica"] = chosen.replica_id
            attributes["hybrid.reason"] = routing_reason(decision, chosen.record.tier, attempt)
        span = self.tracer.start_span("hybrid.route", context=self.inside, start_time=started_ns, attributes=attributes)
        span.end()
        self.span.set_attribute("hybrid.request_class", decision.request_class.value)

    def stream(self, state: ReplicaState):
        """The span of the call to ``state``: the caller ends it (``stream_ended``)."""
        from opentelemetry.trace import SpanKind

        return self.tracer.start_span(
            "hybrid.stream",
            context=self.inside,
            kind=SpanKind.CLIENT,
            attributes={
                "hybrid.tier": state.record.tier,
                "hybrid.replica": state.replica_id,
                "server.address": state.record.address,
                "server.port": state.record.port,
            },
        )

    def end(self, error: BaseException | None) -> None:
        """Ends the request's span: answered, or failed with ``error``."""
        from opentelemetry.trace import Status, StatusCode

        if error is None:
            self.span.set_attribute("hybrid.outcome", "ok")
        elif isinstance(error, HybridError):
            self.span.set_attribute("hybrid.outcome", error.code.name.lower())
            self.span.set_status(Status(StatusCode.ERROR, error.message))
        elif isinstance(error, (GeneratorExit, asyncio.CancelledError)):
            self.span.set_attribute("hybrid.outcome", "cancelled")
        else:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self.span.end()


def stream_ended(call: Call, outcome: Outcome) -> None:
    """Ends a call's stream span with what came of it."""
    from opentelemetry.trace import Status, StatusCode

    span = call.span
    span.set_attribute("hybrid.outcome", outcome.label)
    span.set_attribute("hybrid.completion_tokens", call.tokens)
    if call.first_token_at is not None:
        span.set_attribute("hybrid.ttft_ms", (call.first_token_at - call.arrived_at) * 1000)
    if not outcome.answered and outcome.label != "cancelled":
        span.set_status(Status(StatusCode.ERROR, outcome.label))
    span.end()
