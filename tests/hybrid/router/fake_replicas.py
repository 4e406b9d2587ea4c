"""Scripted replicas for the data plane's tests: real hybrid.v1.Inference servers on loopback, no model.

Each replica answers Generate by a script (an async generator of responses), counts its calls and notes
when one was cancelled under it; an in-memory discovery source lists them for a real router.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from hybrid.discovery import ReplicaRecord
from hybrid.errors import HybridError, OverloadedError, UnavailableError
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler
from hybrid.v1 import inference_pb2 as pb

Script = Callable[["FakeReplica", pb.GenerateRequest], AsyncIterator[pb.GenerateResponse]]


class FakeReplica:
    def __init__(self, replica_id: str, tier: str, script: Script):
        self.script = script
        self.shell = ServerShell("127.0.0.1", 0, [INFERENCE_SERVICE])
        self.shell.server.add_generic_rpc_handlers((inference_handler(self.generate, self.get_load),))
        self.record = ReplicaRecord(
            id=replica_id,
            address="127.0.0.1",
            port=self.shell.port,
            tier=tier,
            model="smollm2-135m",
            precision="int8-b32" if tier == "edge" else "bf16",
            region="test",
            capacity=4,
        )
        self.calls = 0
        self.token_ms = 0.0  # the pace it reports: 0 is unknown
        self.first_chunk_sent = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def generate(self, message: pb.GenerateRequest, context) -> AsyncIterator[pb.GenerateResponse]:
        self.calls += 1
        try:
            async for response in self.script(self, message):
                yield response
                self.first_chunk_sent.set()
        except asyncio.CancelledError:
            self.cancelled.set()  # its slot is free again
            raise

    async def get_load(self, message: pb.GetLoadRequest, context) -> pb.LoadReport:
        return pb.LoadReport(replica_id=self.record.id, capacity=self.record.capacity, token_ms_base=self.token_ms)


class MemorySource:
    """Discovery held in memory: the test adds and removes replicas."""

    def __init__(self, records: list[ReplicaRecord]):
        self.healthy = True
        self.listed = list(records)

    def records(self) -> list[ReplicaRecord]:
        return list(self.listed)

    def staleness_s(self) -> float:
        return 0.0

    def wait_ready(self, timeout_s: float) -> bool:
        return True

    def close(self) -> None:
        pass


def chunk(message: pb.GenerateRequest, token_ids: list[int], last: bool = False) -> pb.GenerateResponse:
    response = pb.GenerateResponse(request_id=message.request_id, text="x" * len(token_ids), token_ids=token_ids)
    if last:
        response.finish_reason = pb.STOP
    return response


async def answers(replica: FakeReplica, message: pb.GenerateRequest):
    yield chunk(message, [1, 2])
    yield chunk(message, [3], last=True)


async def fails_at_once(replica: FakeReplica, message: pb.GenerateRequest):
    raise UnavailableError("scripted replica failed")
    yield  # an async generator all the same


async def dies_in_ray(replica: FakeReplica, message: pb.GenerateRequest):
    raise HybridError("The actor died unexpectedly before finishing this task.")  # INTERNAL, as Ray says it
    yield


async def is_full(replica: FakeReplica, message: pb.GenerateRequest):
    raise OverloadedError("scripted replica is full", 250)
    yield


async def stalls_before_answering(replica: FakeReplica, message: pb.GenerateRequest):
    await asyncio.sleep(30)
    yield chunk(message, [1], last=True)


async def stalls_after_one_chunk(replica: FakeReplica, message: pb.GenerateRequest):
    yield chunk(message, [1])
    await asyncio.sleep(30)
    yield chunk(message, [2], last=True)


async def stops_without_its_final_chunk(replica: FakeReplica, message: pb.GenerateRequest):
    yield chunk(message, [1])


async def streams_slowly(replica: FakeReplica, message: pb.GenerateRequest):
    """Ten tokens, one every 50 ms: a steady answer that outlasts whatever the test does meanwhile."""
    for token in range(1, 10):
        yield chunk(message, [token])
        await asyncio.sleep(0.05)
    yield chunk(message, [10], last=True)
