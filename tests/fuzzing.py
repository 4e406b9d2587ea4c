"""Hypothesis strategies for the gRPC fuzz tests: GenerateRequest messages of any shape, and raw bytes.

What a server must do with any of them: answer, or refuse with a status the caller can act on; never INTERNAL or
UNKNOWN (its own failure), and keep serving afterwards.
"""

from __future__ import annotations

import grpc
from hypothesis import strategies as st

from hybrid.v1 import inference_pb2 as pb

GENERATE = "/hybrid.v1.Inference/Generate"
# Statuses that say the server failed, not the request.
SERVER_FAULTS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
# Chunks read from an answer before the call is cancelled: enough to reach the answer, short on any model.
CHUNKS_READ = 2

_texts = st.text(max_size=40)
_sizes = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_messages = st.lists(
    st.builds(
        pb.ChatMessage, role=st.sampled_from(["system", "user", "assistant", "developer", ""]) | _texts, content=_texts
    ),
    max_size=4,
)

_wild_requests = st.builds(
    pb.GenerateRequest,
    request_id=_texts,
    model=st.sampled_from(["", "smollm2-135m"]) | _texts,
    prompt=st.sampled_from(["", "hello"]) | _texts,
    messages=_messages,
    max_new_tokens=st.sampled_from([0, 1, 2]) | _sizes,
    temperature=st.none() | st.floats(width=32),
    top_p=st.none() | st.floats(width=32),
    seed=st.none() | st.integers(min_value=0, max_value=2**64 - 1),
    stop=st.lists(_texts, max_size=10),
    # Open enums: values no client should send arrive all the same.
    priority=st.integers(min_value=-3, max_value=6),
    affinity_key=_texts,
    client_region=_texts,
    min_precision=st.integers(min_value=-3, max_value=4),
)

_FIELDS = [field.name for field in pb.GenerateRequest.DESCRIPTOR.fields]
_OPTIONAL = ("temperature", "top_p", "seed")


@st.composite
def _near_valid_requests(draw) -> pb.GenerateRequest:
    """A request a server should answer, with one to three of its fields taken from a wild one: the paths
    past validation get their share of the cases."""
    message = pb.GenerateRequest(prompt="hello", max_new_tokens=2, priority=pb.INTERACTIVE)
    wild = draw(_wild_requests)
    for name in draw(st.lists(st.sampled_from(_FIELDS), min_size=0, max_size=3, unique=True)):
        message.ClearField(name)
        if name in ("messages", "stop"):
            getattr(message, name).extend(getattr(wild, name))
        elif name not in _OPTIONAL or wild.HasField(name):
            setattr(message, name, getattr(wild, name))
    return message


generate_requests = st.one_of(_wild_requests, _near_valid_requests())


@st.composite
def raw_requests(draw) -> bytes:
    """Bytes that are no message at all, or a valid message with some of its bytes changed or cut."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    raw = bytearray(draw(generate_requests).SerializeToString())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not raw:
            break
        raw[draw(st.integers(min_value=0, max_value=len(raw) - 1))] = draw(st.integers(min_value=0, max_value=255))
    return bytes(raw[: draw(st.integers(min_value=0, max_value=len(raw)))])


def send_raw(channel: grpc.Channel, raw: bytes, metadata=(), timeout_s: float = 5.0) -> grpc.StatusCode:
    """Sends ``raw`` as a Generate request and reads a little of the answer; the status it ended with (OK when
    chunks came)."""
    call = channel.unary_stream(GENERATE)(raw, timeout=timeout_s, metadata=metadata)
    try:
        for index, _ in enumerate(call):
            if index + 1 >= CHUNKS_READ:
                break
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()
    finally:
        call.cancel()
