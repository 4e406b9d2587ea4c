"""Traces across the tiers with OpenTelemetry's SDK: off by default; on, spans go out over OTLP (gRPC).

The W3C ``traceparent`` (and ``tracestate``) a caller sends in gRPC metadata or an HTTP header is taken as
the parent of the router's span; the router passes its own on to the replica in the call's metadata, so
one trace holds the client, the router's routing decision (``hybrid.router.tracing``) and the replica's
stream with its queue wait, prefill and decode (``hybrid.engine.spans``).

Off, nothing here makes a span, a context or a carrier: every caller asks ``tracer()`` first, and a process
that does not trace pays one global read per request. Tracing turns on where ``--otlp-endpoint`` is given
or where the standard environment asks for it (``OTEL_TRACES_EXPORTER=otlp``, ``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` keeps it off whatever else says.
The exporter itself reads the rest of ``OTEL_EXPORTER_OTLP_*`` (headers, TLS, timeout), the provider
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_TRACES_SAMPLER``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, Field

from hybrid import wire

log = logging.getLogger(__name__)

# The one tracer of this process while tracing is on; None while off.
_tracer = None
_propagator = None

# A version-00 traceparent, the one form callers send today; any other form (a later version, a tracestate
# beside it) goes through OpenTelemetry's propagator, which knows every rule of the format.
_PLAIN_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


class TracingSettings(BaseModel):
    """How a router or replica process exports its spans; the OTEL_* environment fills in what is not set."""

    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/gRPC collector that receives the spans (e.g. http://localhost:4317); setting it turns "
        "tracing on. None leaves it to OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, and off where that is unset too.",
    )
    sample_ratio: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Share of the traces that start here which are recorded; a caller's sampled flag is always "
        "followed. None leaves it to OTEL_TRACES_SAMPLER (every trace where that is unset too).",
    )


def tracer():
    """The process's tracer while tracing is on, else None: callers do no tracing work at all then."""
    return _tracer


def wanted(settings: TracingSettings, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the settings or the environment turn tracing on: the flag, else OTEL_TRACES_EXPORTER naming otlp,
    else an OTLP endpoint in the environment (unless OTEL_TRACES_EXPORTER is none)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    named = {name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").lower().split(",") if name.strip()}
    unsupported = named - {"otlp", "none"}
    if unsupported:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER names {', '.join(sorted(unsupported))}, which this cannot export to: set it to "
            "'otlp' (or 'none' to turn tracing off)"
        )
    if settings.otlp_endpoint or "otlp" in named:
        return True
    return "none" not in named and any(environ.get(v) for v in ENDPOINT_VARIABLES)


def configure(settings: TracingSettings, service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Turns tracing on where ``settings`` or the environment ask for it, exporting over OTLP/gRPC in batches;
    never turns it off. ``service_name`` names this process in the traces unless OTEL_SERVICE_NAME does.
    Returns whether tracing is on. Raises ValueError for an exporter or protocol this cannot use."""
    if _tracer is not None:
        return True
    if not wanted(settings, environ):
        return False
    protocol = next((environ[v] for v in PROTOCOL_VARIABLES if environ.get(v)), "grpc").strip().lower()
    if protocol != "grpc":
        raise ValueError(f"OTLP protocol {protocol!r} is not supported here: traces are exported over 'grpc'")
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        from hybrid.telemetry.sdk import batching, tracer_provider
    except ImportError as missing:
        raise ValueError(
            f"tracing needs OpenTelemetry's SDK and OTLP exporter ({missing.name} is missing): "
            "pip install 'hybrid-inference[tracing]', or leave --otlp-endpoint and OTEL_* unset"
        ) from None

    named = None if environ.get("OTEL_SERVICE_NAME") else service_name
    provider = batching(
        tracer_provider(named, settings.sample_ratio), OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    )
    use_provider(provider)
    where = settings.otlp_endpoint or next((environ[v] for v in ENDPOINT_VARIABLES if environ.get(v)), "the default")
    log.info("tracing on: spans of %s go to %s over OTLP/gRPC", service_name, where)
    return True


def use_provider(provider) -> None:
    """Traces through ``provider`` (an SDK TracerProvider) from now on: what ``configure`` does, and what
    tests do with an in-memory exporter."""
    global _tracer, _propagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _propagator = TraceContextTextMapPropagator()
    _tracer = provider.get_tracer("hybrid")


def turn_off() -> None:
    """Stops tracing in this process (the provider given to ``use_provider`` is left as it is)."""
    global _tracer
    _tracer = None


def carrier_of(pairs: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str] | None:
    """The trace headers among gRPC metadata or HTTP header pairs; None while tracing is off or none came."""
    if _tracer is None or pairs is None:
        return None
    carrier = {key: value for key, value in pairs if key in wire.TRACE_KEYS and isinstance(value, str)}
    return carrier or None


def parent_of(carrier: dict[str, str] | None):
    """The OpenTelemetry context a carrier names; None (a new trace) where there is none.

    A plain version-00 ``traceparent`` is read here directly: the propagator's general parse costs several
    times as much, on every traced request of the router and of each replica."""
    if not carrier:
        return None
    header = carrier.get("traceparent")
    plain = _PLAIN_TRACEPARENT.fullmatch(header) if header and len(carrier) == 1 else None
    if plain is None:
        return _propagator.extract(carrier)
    trace_id, span_id, flags = plain.groups()
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    from opentelemetry import trace

    context = trace.SpanContext(int(trace_id, 16), int(span_id, 16), True, trace.TraceFlags(int(flags, 16)))
    return trace.set_span_in_context(trace.NonRecordingSpan(context))


def metadata_of(span) -> wire.Metadata:
    """The trace headers that make the next hop's spans children of ``span``, written from its context as the
    W3C format has them (what the propagator writes, without its context lookups)."""
    context = span.get_span_context()
    if not context.is_valid:
        return ()
    traceparent = ("traceparent", f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}")
    if not context.trace_state:
        return (traceparent,)
    return traceparent, ("tracestate", context.trace_state.to_header())


def wall_offset_ns() -> int:
    """Wall-clock nanoseconds minus time.monotonic()'s, read now: one offset for every time of one set of spans."""
    return time.time_ns() - int(time.monotonic() * 1e9)


def wall_ns(monotonic_s: float, offset_ns: int | None = None) -> int:
    """A time.monotonic() reading as the wall-clock nanoseconds spans are stamped with. Times converted with one
    ``offset_ns`` keep their order exactly; each conversion without it reads both clocks afresh, a few
    nanoseconds apart."""
    offset = wall_offset_ns() if offset_ns is None else offset_ns
    return offset + int(monotonic_s * 1e9)
