"""What tracing and the request log cost the router's CPU per request, measured in one process without gRPC
around it.

It runs what the router's data plane does for a traced request — take the caller's ``traceparent``, open
the routing decision's span, set the decision, write the trace headers for the replica, set the answer's
figures and end the span — through the SDK's BatchSpanProcessor, whose exporter here encodes
every batch to OTLP protobuf exactly as the OTLP/gRPC exporter does and drops it instead of sending it. The
CPU time counted is the whole process's (the exporter thread included, each round waiting for its spans to be
encoded), over many requests, minus the same loop without tracing; the lowest, median and highest of the
rounds show how much the machine's other work moves it. Off, the router does one global read per request;
that figure is shown too.

The request log's line is measured the same way: ``RequestLog.ended`` for an answered call, writing through
the request log's own logger to /dev/null (JSON, the logging module, the write system call).

    python benchmarks/observability_overhead.py --requests 20000 --rounds 5

``benchmarks/router_overhead.py --tracing`` measures the same end to end, with the router in its own
process and a collector stand-in receiving the spans; on a shared 2-core machine its noise is larger than
the effect.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def drop_exporter():
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class EncodeAndDrop(SpanExporter):
        encoded = 0

        def export(self, spans):
            encode_spans(spans).SerializeToString()
            self.encoded += len(spans)
            return SpanExportResult.SUCCESS

    return EncodeAndDrop()


def traced_request(tracing, decision, state, with_parent: bool) -> None:
    """The router's tracing work for one request, in the order the data plane does it."""
    from hybrid.protocol import GenerationRequest, Priority
    from hybrid.router.ledger import OK, Call
    from hybrid.router.tracing import RequestTrace

    request = GenerationRequest("r", "", "hi", None, 8, 0.0, 1.0, None, [], Priority.INTERACTIVE)
    active = tracing.tracer()
    if active is not None:
        request.trace_carrier = tracing.carrier_of(PARENT.items() if with_parent else ())
        trace = RequestTrace(active, request)
        trace.decided(decision, 0)
        trace.metadata()
        call = Call(state, time.monotonic(), None, 8, first_token_at=time.monotonic(), tokens=8)
        trace.call_ended(call, OK)
        trace.end(None)


def cpu_per_request(requests: int, run, rounds: int = 1, settle=lambda: None) -> list[float]:
    """CPU seconds of the whole process per call of ``run``, in each of ``rounds`` rounds of ``requests`` calls;
    ``settle`` (the spans' export, waited for) is counted in its round."""
    for _ in range(min(2000, requests)):
        run()
    settle()
    per_round = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(requests):
            run()
        settle()
        per_round.append((time.process_time() - started) / requests)
    return per_round


def measure(requests: int, sample: float, with_parent: bool, rounds: int) -> tuple[list[float], list[float], int]:
    """Per round, CPU per request with tracing off and on; and the spans encoded (every one the loop ended)."""
    from hybrid.discovery import ReplicaRecord
    from hybrid.protocol import Tier
    from hybrid.router.policy.policy import Decision
    from hybrid.router.policy.replica import ReplicaState
    from hybrid.router.policy.tiers import RequestClass
    from hybrid.telemetry import tracing
    from hybrid.telemetry.sdk import batching, tracer_provider

    record = ReplicaRecord(
        id="edge-1", address="127.0.0.1", port=1, tier="edge", model="m", precision="int8", region="r", capacity=4
    )
    state = ReplicaState(record)
    decision = Decision(RequestClass.HOT, [Tier.EDGE], state)
    tracing.turn_off()
    off = cpu_per_request(requests, lambda: traced_request(tracing, decision, state, with_parent), rounds)
    # The provider the router builds (hybrid.telemetry.sdk), its exporter encoding and dropping. The loop ends
    # spans far faster than a router does: a queue that holds them all keeps the SDK from dropping (and so not
    # encoding) any.
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", str(requests * (rounds + 1)))
    exporter = drop_exporter()
    # Every trace recorded is the router's default (no --trace-sample): the SDK's parent-based always-on sampler.
    provider = batching(tracer_provider("hybrid-router", None if sample == 1.0 else sample), exporter)
    tracing.use_provider(provider)
    try:
        on = cpu_per_request(
            requests, lambda: traced_request(tracing, decision, state, with_parent), rounds, provider.force_flush
        )
    finally:
        tracing.turn_off()
        provider.shutdown()
    return off, on, exporter.encoded


def request_log_line(requests: int) -> float:
    from hybrid.discovery import ReplicaRecord
    from hybrid.protocol import Tier
    from hybrid.router.ledger import OK, Call
    from hybrid.router.policy.policy import Decision
    from hybrid.router.policy.replica import ReplicaState
    from hybrid.router.policy.tiers import RequestClass
    from hybrid.router.request_log import RequestLog, open_log

    record = ReplicaRecord(
        id="edge-1", address="127.0.0.1", port=1, tier="edge", model="m", precision="int8", region="r", capacity=4
    )
    state = ReplicaState(record)
    now = time.monotonic()
    call = Call(state, now, None, 8, "hot", now, first_token_at=now, tokens=8, request_id="r")
    call.decision = Decision(RequestClass.HOT, [Tier.EDGE], state)
    log = RequestLog(open_log(os.devnull))
    try:
        return min(cpu_per_request(requests, lambda: log.ended(call, OK, now), rounds=3))
    finally:
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000, help="traced requests per round")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of each measurement; the spread shows the machine's noise"
    )
    parser.add_argument("--out", default=None, help="JSON of the figures")
    args = parser.parse_args()
    rows = []
    for sample, with_parent in ((1.0, True), (1.0, False), (0.1, False)):
        off, on, encoded = measure(args.requests, sample, with_parent, args.rounds)
        cost = sorted(o - f for o, f in zip(on, off))
        rows.append(
            {
                "sample": sample,
                "caller_traceparent": with_parent,
                "off_us": round(min(off) * 1e6, 2),
                "on_us": round(min(on) * 1e6, 1),
                "tracing_us_per_request": {
                    "lowest": round(cost[0] * 1e6, 1),
                    "median": round(cost[len(cost) // 2] * 1e6, 1),
                    "highest": round(cost[-1] * 1e6, 1),
                },
                "spans_encoded": encoded,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    line = request_log_line(args.requests)
    print(json.dumps({"request_log_us_per_line": round(line * 1e6, 1)}), flush=True)
    # A fixed loop of pure Python, to compare machines: about 2 microseconds on an unloaded modern core.
    calibration = min(cpu_per_request(args.requests, lambda: sum(range(100)), rounds=3))
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "python": platform.python_version(),
        "command": " ".join(["python", *sys.argv]),
        "calibration_sum_range_100_us": round(calibration * 1e6, 2),
        "rows": rows,
        "request_log_us_per_line": round(line * 1e6, 1),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
