"""The router's span of one request, made only while the process traces (``hybrid.telemetry.tracing``).

``hybrid.route`` is the routing decision's span: it covers the request at the router, child of the caller's
``traceparent``, and carries the decision (chosen tier and replica, and why: the class, first choice or
spillover, which try) and, where the request failed, its outcome. Its context travels to the replica in the call's metadata, so the
replica's ``hybrid.stream`` span (``hybrid.engine.spans``), with its queue wait, prefill and decode, is its
child. A try that failed before the one that answered is an event on it, naming the replica and the status.

One span a request at the router, with three attributes, started once the first decision names them and
the trace headers for the replica written straight from its context: on the development VM the SDK takes
about 35 to 45 microseconds of CPU to make and end it, its batching about 10 and its OTLP encoding about 30,
where the router's whole budget for tracing is a tenth of a millisecond a request
(``benchmarks/observability_overhead.py``). The request id, tokens and timings are on the replica's spans.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hybrid.errors import HybridError
from hybrid.protocol import GenerationRequest
from hybrid.router.ledger import refusal, routing_reason
from hybrid.telemetry import tracing

try:
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # tracing is an extra; without it no RequestTrace is ever made (hybrid.telemetry.tracing)
    pass

if TYPE_CHECKING:
    from hybrid import wire
    from hybrid.router.ledger import Call, Outcome
    from hybrid.router.policy.policy import Decision


class RequestTrace:
    """One request's span at the router.

    The span is started at the first routing decision (stamped with the request's arrival), not on arrival: its
    attributes then go in with it at once, where setting them on a started span costs the SDK a second pass."""

    def __init__(self, tracer, request: GenerationRequest):
        self._tracer = tracer
        self._parent = tracing.parent_of(request.trace_carrier)
        self._started_ns = tracing.wall_ns(request.arrived_at)
        self._span = None
        self._metadata: wire.Metadata | None = None

    @property
    def span(self):
        """The request's span, started now if no decision has started it yet."""
        if self._span is None:
            self._start({})
        return self._span

    def _start(self, attributes: dict[str, str]) -> None:
        self._span = self._tracer.start_span(
            "hybrid.route",
            context=self._parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=self._started_ns,
        )

    def decided(self, decision: Decision, attempt: int) -> None:
        """The routing decision of try ``attempt``."""
        chosen = decision.chosen
        request_class = decision.request_class.value
        if chosen is None:
            attributes = {"hybrid.reason": f"{request_class}: {refusal(decision)[1]}"}
        else:
            reason = f"{request_class}: {routing_reason(decision, chosen.record.tier, attempt)}"
            attributes = {
                "hybrid.tier": chosen.record.tier,
                "hybrid.replica": chosen.replica_id,
                "hybrid.reason": reason,
            }
        if self._span is None:
            self._start(attributes)
        else:
            self._span.set_attributes(attributes)

    def trace_id(self) -> str:
        """The trace's id as collectors show it (32 hex digits), for the request log to point at the trace."""
        return format(self.span.get_span_context().trace_id, "032x")

    def metadata(self) -> wire.Metadata:
        """The trace headers that make the replica's spans children of this request's."""
        if self._metadata is None:
            self._metadata = tracing.metadata_of(self.span)
        return self._metadata

    def call_ended(self, call: Call, outcome: Outcome) -> None:
        """A call to a replica ended: one that failed is an event on the request's span."""
        if not outcome.answered:
            self.span.add_event(
                "hybrid.try_ended",
                {
                    "hybrid.replica": call.replica.replica_id,
                    "hybrid.outcome": outcome.label,
                    "hybrid.tokens": call.tokens,
                },
            )

    def end(self, error: BaseException | None) -> None:
        """Ends the request's span: answered (its status unset, as OpenTelemetry has it), or failed with ``error``."""
        if error is None:
            pass
        elif isinstance(error, HybridError):
            self.span.set_attribute("hybrid.outcome", error.code.name.lower())
            self.span.set_status(Status(StatusCode.ERROR, error.message))
        elif isinstance(error, (GeneratorExit, asyncio.CancelledError)):
            self.span.set_attribute("hybrid.outcome", "cancelled")
        else:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self.span.end()
