"""One call to one replica: send the request with the caller's remaining budget, stream its answer, and
end every way it can end with a status the caller can act on, telling the call hooks as it goes.

A stream cut short — the replica died, its server stopped, or the router closed its channel because it
left discovery — ends at once as UNAVAILABLE (retried elsewhere by the data plane while no token has come),
never as a silent wait for the deadline. Only the caller hanging up ends it as a cancellation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import DecodeError

from hybrid import wire
from hybrid.errors import HybridError
from hybrid.protocol import GenerationRequest
from hybrid.router.ledger import CANCELLED, OK, Call, HookChain, Outcome
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.tracing import RequestTrace
from hybrid.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from hybrid.router.keyguard import Grant
    from hybrid.router.policy.policy import Decision
    from hybrid.router.view import ReplicaClient

# Answers that say the request itself is wrong or over: another replica would answer the same.
CALLER_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
CUT_SHORT = Outcome("cut_short", replica_failed=True, unreachable=True, retryable=True)
# The router closed the replica's channel (it left discovery): nothing to hold against the replica.
CHANNEL_CLOSED = Outcome("cut_short", retryable=True)


class ReplicaFailed(HybridError):
    """A replica's own error status, passed on to the caller."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after_ms: int | None = None):
        super().__init__(message)
        self.code = code
        self.retry_after_ms = retry_after_ms


def passed_on(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """The status a replica's failure reaches the caller with: a replica gone away is UNAVAILABLE.

    CANCELLED from a replica is its server stopping mid-call (a caller that hangs up cancels the router's
    task instead), and Ray Serve reports a replica's death as INTERNAL "actor died unexpectedly"."""
    code = error.code()
    if code == grpc.StatusCode.CANCELLED:
        return grpc.StatusCode.UNAVAILABLE
    if code == grpc.StatusCode.INTERNAL and "actor died unexpectedly" in (error.details() or "").lower():
        return grpc.StatusCode.UNAVAILABLE
    return code


def outcome_of(code: grpc.StatusCode) -> Outcome:
    # A full replica is not a failing one: the policy steers around it through its load.
    blameless = code == grpc.StatusCode.RESOURCE_EXHAUSTED or code in CALLER_CODES
    return Outcome(
        code.name.lower(),
        replica_failed=not blameless,
        unreachable=code == grpc.StatusCode.UNAVAILABLE,
        retryable=code not in CALLER_CODES,
    )


def caller_cancelled() -> bool:
    """Whether the running task itself is being cancelled (its caller hung up), rather than a CancelledError
    raised by grpc.aio from a call whose channel was closed under it. Before Python 3.11, always assumed."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return task is None or cancelling is None or cancelling() > 0


async def stream_call(
    client: ReplicaClient | None,
    state: ReplicaState,
    request: GenerationRequest,
    raw_request: bytes,
    request_class: str,
    hooks: HookChain,
    *,
    attempt: int = 0,
    attempts_left: int = 0,
    decision: Decision | None = None,
    trace: RequestTrace | None = None,
    grant: Grant | None = None,
) -> AsyncIterator[bytes]:
    """Streams the replica's answer, each chunk as the bytes it came as; ``raw_request`` is ``request`` as sent
    to the router. ``attempt`` counts the replicas tried before for the request (``attempts_left`` the ones the
    router would still try), ``decision`` is the routing decision that sent it here, and ``trace`` (while tracing)
    the request's span, whose context goes to the replica. Raises ReplicaFailed with the status the caller should
    get."""
    remaining = request.remaining_s()
    if remaining is not None and remaining <= 0:
        raise ReplicaFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the request was sent")
    if client is None:  # its channel closed between the choice and the call
        raise ReplicaFailed(grpc.StatusCode.UNAVAILABLE, f"{state.replica_id} left discovery before the call")
    began = time.monotonic()
    deadline = None if remaining is None else began + remaining
    call = Call(
        state,
        began,
        deadline,
        request.max_new_tokens,
        request_class,
        request.arrived_at,
        request_id=request.request_id,
        attempt=attempt,
        attempts_left=attempts_left,
        decision=decision,
        trace=trace,
        grant=grant,
    )
    metadata = wire.call_metadata(state.record.application, remaining)
    if trace is not None:
        metadata += trace.metadata()
    rpc = client.generate_bytes(raw_request, timeout=remaining, metadata=metadata)
    call.stop_stream = rpc.cancel
    hooks.sent(call)
    outcome = CANCELLED  # unless the stream ends or fails below: the caller went away
    try:
        finished = False
        async for raw in rpc:
            # Read once for the books (tokens, the final chunk), relayed as it came.
            response = pb.GenerateResponse.FromString(raw)
            if response.finish_reason:
                finished = True
                call.reported_usage = (response.usage.prompt_tokens, response.usage.completion_tokens)
            hooks.chunk(call, len(response.token_ids), time.monotonic())
            yield raw
        if not finished:
            outcome = CUT_SHORT
            raise ReplicaFailed(
                grpc.StatusCode.UNAVAILABLE, "the replica's stream ended without its final chunk (it went away)"
            )
        outcome = OK
    except grpc.aio.AioRpcError as error:
        code = passed_on(error)
        outcome = outcome_of(code)
        retry_after_ms = wire.retry_after_ms(error.trailing_metadata())
        raise ReplicaFailed(code, error.details() or code.name, retry_after_ms) from None
    except DecodeError:
        outcome = outcome_of(grpc.StatusCode.INTERNAL)
        raise ReplicaFailed(grpc.StatusCode.INTERNAL, "the replica sent a chunk that is no GenerateResponse") from None
    except asyncio.CancelledError:
        if caller_cancelled():
            raise
        if call.abandoned:
            outcome, message = CUT_SHORT, f"the router ended the call: {call.abandoned}"
        else:
            outcome = CHANNEL_CLOSED
            message = "the router closed the stream's channel (the replica left discovery or moved)"
        raise ReplicaFailed(grpc.StatusCode.UNAVAILABLE, message) from None
    finally:
        hooks.ended(call, outcome, time.monotonic())
        if trace is not None:
            trace.call_ended(call, outcome)
        if not outcome.answered:
            rpc.cancel()  # a cancelled caller or a failed stream releases the replica's slot now
