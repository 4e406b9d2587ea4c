"""The client resends a request the server could not start, within its deadline, and never one that began."""

from __future__ import annotations

import time

import grpc
import pytest

from hybrid.client import AsyncHybridClient, HybridClient, RequestFailed
from hybrid.errors import UnavailableError
from hybrid.serving.background import BackgroundLoop
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler
from hybrid.v1 import inference_pb2 as pb


class FlakyReplica:
    """Refuses its first ``refusals`` calls with UNAVAILABLE; then answers, or fails after one chunk."""

    def __init__(self, config: tuple[int, bool]):
        self.refusals, self.cut_after_one_chunk = config
        self.calls = 0
        self.shell = ServerShell("127.0.0.1", 0, [INFERENCE_SERVICE])
        self.shell.server.add_generic_rpc_handlers((inference_handler(self.generate, self.get_load),))
        self.address = self.shell.address

    async def start(self) -> None:
        await self.shell.start()

    async def generate(self, message, context):
        self.calls += 1
        if self.calls <= self.refusals:
            raise UnavailableError("restarting")
        yield pb.GenerateResponse(request_id=message.request_id, text="a", token_ids=[1])
        if self.cut_after_one_chunk:
            raise UnavailableError("went away mid-answer")
        yield pb.GenerateResponse(request_id=message.request_id, text="b", token_ids=[2], finish_reason=pb.STOP)

    async def get_load(self, message, context):
        return pb.LoadReport()


@pytest.fixture
def replica():
    loops = []

    def start(refusals: int = 0, cut_after_one_chunk: bool = False) -> FlakyReplica:
        loop = BackgroundLoop("flaky")
        loops.append(loop)
        return loop.start_server(FlakyReplica, (refusals, cut_after_one_chunk))

    yield start
    for loop in loops:
        loop.close()


def test_a_request_the_server_could_not_start_is_sent_again(replica):
    flaky = replica(refusals=3)
    with HybridClient(flaky.address, timeout_s=10) as client:
        assert client.complete(prompt="hi").text == "ab"
    assert flaky.calls == 4


async def test_the_async_client_sends_it_again_too(replica):
    flaky = replica(refusals=2)
    async with AsyncHybridClient(flaky.address, timeout_s=10) as client:
        assert (await client.complete(prompt="hi")).text == "ab"
    assert flaky.calls == 3


def test_an_answer_that_began_is_never_sent_again(replica):
    flaky = replica(cut_after_one_chunk=True)
    with HybridClient(flaky.address, timeout_s=10) as client:
        with pytest.raises(RequestFailed) as failed:
            client.complete(prompt="hi")
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE and flaky.calls == 1


def test_a_server_that_stays_down_is_unavailable_within_the_deadline():
    began = time.monotonic()
    with HybridClient("127.0.0.1:1", timeout_s=1.5) as client:
        with pytest.raises(RequestFailed) as failed:
            client.complete(prompt="hi")
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert 0.3 < time.monotonic() - began < 1.5, "it tried again, and gave up before the deadline"
