"""The router over real gRPC: in front of the session's real edge agent, found through static discovery."""

from __future__ import annotations

import time

import grpc
import pytest

from hybrid.client import HybridClient, RequestFailed, build_request
from hybrid.router.policy.expectations import Outlook
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import router_admin_pb2 as admin_pb
from hybrid.v1 import router_admin_pb2_grpc as admin_grpc
from tests.conftest import PROMPTS


def chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def test_the_router_streams_what_the_replica_streams(edge_router, edge_agent):
    with HybridClient(edge_router.address) as routed, HybridClient(edge_agent.address) as direct:
        through = list(routed.stream(messages=chat(PROMPTS[0]), max_new_tokens=12, priority="realtime"))
        straight = direct.complete(messages=chat(PROMPTS[0]), max_new_tokens=12)
    assert [t for c in through for t in c.token_ids] == straight.token_ids
    assert len(through) > 1, "chunks must be proxied one by one, not gathered"
    assert through[-1].served_by.tier == pb.EDGE
    assert through[-1].served_by.replica_id == edge_agent.agent.replica_id


def test_the_router_learns_each_replicas_pace_from_its_calls_and_load_reports(edge_router):
    with HybridClient(edge_router.address) as client:
        answer = client.complete(messages=chat(PROMPTS[1]), max_new_tokens=12, priority="interactive")
    assert len(answer.token_ids) > 1
    (state,) = edge_router.router.view.replicas()
    ledger = edge_router.router.dataplane.ledger
    assert ledger.recent_token_ms(state.replica_id, time.monotonic()) > 0, "the call's time per token"
    assert not ledger.in_flight(state.replica_id)
    waited_until = time.monotonic() + 5
    while not state.recent_ttft_p90_ms and time.monotonic() < waited_until:  # the next load poll brings it
        time.sleep(0.1)
    assert state.recent_ttft_p90_ms > 0, "the replica's first tokens, from its load report"
    assert state.pace.per_row_ms > 0, "how its tokens slow as its batch fills, from its load report"
    assert Outlook(state, ledger, time.monotonic()).token_ms() >= state.pace.token_ms(1)


def test_list_replicas_and_explain(edge_router, edge_agent):
    with grpc.insecure_channel(edge_router.address) as channel:
        admin = admin_grpc.RouterAdminStub(channel)
        replicas = admin.ListReplicas(admin_pb.ListReplicasRequest(), timeout=10).replicas
        assert [r.replica_id for r in replicas] == [edge_agent.agent.replica_id]
        assert replicas[0].tier == pb.EDGE and replicas[0].rtt_ms > 0, "the router polls and times every replica"
        realtime = admin.Explain(build_request("hi", priority="realtime"), timeout=10)
        assert realtime.request_class == "REALTIME" and realtime.chosen.replica_id == edge_agent.agent.replica_id
        # The reasons name the replica chosen, whichever pass chose it (the first-token target depends on load).
        assert any(edge_agent.agent.replica_id in r for r in realtime.reasons[1:]), realtime.reasons
        batch = admin.Explain(build_request("hi", priority="batch"), timeout=10)
    # BATCH never goes to the edge (the routing table): with no cloud tier there is nowhere to go.
    assert not batch.chosen.replica_id
    assert list(batch.tier_order) == [pb.PUBLIC, pb.PRIVATE]
    assert batch.reasons[-1] == "no tier has room: RESOURCE_EXHAUSTED"


def test_no_tier_with_room_is_resource_exhausted_with_a_retry_hint(edge_router):
    with HybridClient(edge_router.address) as client:
        with pytest.raises(RequestFailed) as failure:
            client.complete(prompt="hi", priority="batch")
    assert failure.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.value.retry_after_ms and failure.value.retry_after_ms >= 100


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (dict(prompt="hi", temperature=5.0), grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
        (dict(prompt="hi", model="llama-70b"), grpc.StatusCode.NOT_FOUND, "is not served here"),
        # Past the replica's context, yet within what it could answer before the deadline: the router sends it on,
        # and the replica's own refusal comes back (4000 tokens would be refused by the router as too slow).
        (dict(prompt="hi " * 1900, max_new_tokens=400), grpc.StatusCode.INVALID_ARGUMENT, "max_new_tokens"),
    ],
)
def test_bad_requests_keep_the_replicas_status_and_message(edge_router, params, code, message):
    with HybridClient(edge_router.address) as client:
        with pytest.raises(RequestFailed) as failure:
            client.complete(priority="realtime", **params)
        assert failure.value.code == code and message in failure.value.details, failure.value
        assert client.complete(prompt="Hello", max_new_tokens=2, priority="realtime").token_ids


def test_malformed_bytes_are_invalid_argument(edge_router):
    with grpc.insecure_channel(edge_router.address) as channel:
        with pytest.raises(grpc.RpcError) as failure:
            list(channel.unary_stream("/hybrid.v1.Inference/Generate")(b"\xff\xfe garbage", timeout=10))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_cancelled_call_is_cancelled_on_the_replica(edge_router, edge_agent):
    engine = edge_agent.agent.engine
    with HybridClient(edge_router.address) as client:
        stream = client.stream(
            messages=chat("Write a long poem about rivers."), max_new_tokens=400, priority="realtime"
        )
        next(stream)
        assert engine.load().active == 1
        stream.close()  # the caller hangs up
    deadline = time.monotonic() + 10
    while engine.load().active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.load().active == 0, "the replica kept generating for a caller that had gone"


def test_the_deadline_reaches_the_replica(edge_router):
    with HybridClient(edge_router.address) as client:
        with pytest.raises(RequestFailed) as failure:
            client.complete(messages=chat("Write a long poem about rivers."), max_new_tokens=400, timeout_s=0.5)
    assert failure.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
