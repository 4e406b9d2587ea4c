"""Model-free replicas for the bench's tests: real hybrid.v1.Inference servers that answer by script.

The prompt steers each answer: ``sleep:S`` waits S seconds before the first chunk, ``full`` answers
RESOURCE_EXHAUSTED with a retry hint, anything else gets two chunks at once.
"""

from __future__ import annotations

import asyncio

import pytest

from hybrid.discovery import ReplicaRecord
from hybrid.errors import OverloadedError
from hybrid.protocol import Chunk, FinishReason, ServedBy, Tier
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler
from hybrid.v1 import inference_pb2 as pb

# The timing a scripted replica reports on its last chunk, as a replica measures it from the request's arrival.
SCRIPTED_QUEUE_MS = 1.5
SCRIPTED_TTFT_MS = 4.0


class ScriptedReplica:
    def __init__(self, replica_id: str, tier: str):
        self.replica_id = replica_id
        self.tier = tier
        self.served_by = ServedBy(Tier.parse(tier), replica_id, "test", "none")
        self.shell = ServerShell("127.0.0.1", 0, [INFERENCE_SERVICE])
        self.shell.server.add_generic_rpc_handlers((inference_handler(self.generate, self.get_load),))
        self.requests: list[pb.GenerateRequest] = []

    @staticmethod
    def _text(message: pb.GenerateRequest) -> str:
        return message.prompt or " ".join(m.content for m in message.messages)

    async def generate(self, message: pb.GenerateRequest, context):
        self.requests.append(message)
        text = self._text(message)
        if "full" in text:
            raise OverloadedError("scripted replica is full", 250)
        if "sleep:" in text:
            await asyncio.sleep(float(text.split("sleep:")[1].split()[0]))
        yield Chunk(message.request_id, "a", [1], self.served_by).to_proto()
        last = Chunk(message.request_id, "b", [2], self.served_by, FinishReason.LENGTH, 3, 2)
        last.queue_ms, last.time_to_first_token_ms, last.total_ms = SCRIPTED_QUEUE_MS, SCRIPTED_TTFT_MS, 5.0
        yield last.to_proto()

    async def get_load(self, message, context) -> pb.LoadReport:
        return pb.LoadReport(replica_id=self.replica_id, capacity=8)

    def record(self) -> ReplicaRecord:
        return ReplicaRecord(
            id=self.replica_id,
            address="127.0.0.1",
            port=self.shell.port,
            tier=self.tier,
            model="scripted",
            precision="none",
            region="test",
            capacity=8,
        )


@pytest.fixture
async def scripted_replicas():
    replicas = [ScriptedReplica("edge-a", "edge"), ScriptedReplica("private-a", "private")]
    for replica in replicas:
        await replica.shell.start()
    yield replicas
    for replica in replicas:
        await replica.shell.stop(0)
