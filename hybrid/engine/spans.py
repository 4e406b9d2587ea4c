"""A replica's spans of one request: ``hybrid.stream`` (the replica answering it, from its arrival to the
end of its stream), and under it ``hybrid.queue_wait``, ``hybrid.prefill`` and ``hybrid.decode``.

The engine thread only notes times on the request's ``Sequence`` (it does that whether or not anyone
traces); the spans are written after the answer ends, on the event loop, with those times as their
bounds, so tracing adds no work to the thread that runs the model.
"""

from __future__ import annotations

import time

from hybrid.engine.sequence import Sequence
from hybrid.protocol import ServedBy
from hybrid.telemetry import tracing


def record(tracer, parent, sequence: Sequence, served_by: ServedBy, outcome: str) -> None:
    """Writes the spans of ``sequence``'s request, children of ``parent`` (an OpenTelemetry context)."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    request = sequence.request
    ended_at = time.monotonic()
    # One offset for all of them, so that a child never starts before its parent by the clocks' jitter.
    offset = tracing.wall_offset_ns()
    replica_span = tracer.start_span(
        "hybrid.stream",
        context=parent,
        kind=SpanKind.SERVER,
        start_time=tracing.wall_ns(request.arrived_at, offset),
        attributes={
            "hybrid.request_id": request.request_id,
            "hybrid.replica": served_by.replica_id,
            "hybrid.prompt_tokens": len(sequence.prompt_ids),
            "hybrid.completion_tokens": sequence.generated,
            "hybrid.outcome": outcome,
        },
    )
    if outcome != "ok":
        replica_span.set_status(Status(StatusCode.ERROR, outcome))
    inside = trace.set_span_in_context(replica_span)
    dispatched_at = sequence.dispatched_at or None
    _child(tracer, inside, "hybrid.queue_wait", request.arrived_at, dispatched_at or ended_at, offset)
    if sequence.prefill_started_at is not None:
        prefill_ended_at = sequence.prefill_ended_at or ended_at
        _child(tracer, inside, "hybrid.prefill", sequence.prefill_started_at, prefill_ended_at, offset)
    if sequence.first_token_at is not None:
        _child(tracer, inside, "hybrid.decode", sequence.first_token_at, sequence.finished_at or ended_at, offset)
    replica_span.end(end_time=tracing.wall_ns(ended_at, offset))


def _child(tracer, parent, name: str, start: float, end: float, offset_ns: int) -> None:
    span = tracer.start_span(name, context=parent, start_time=tracing.wall_ns(start, offset_ns))
    span.end(end_time=tracing.wall_ns(end, offset_ns))
