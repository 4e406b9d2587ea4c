"""A replica on loopback gRPC whose engine is the real continuous-batching engine over a scripted model: the
shared serving code (``request_of``, ``inference_handler``) and engine code run as in an edge agent."""

from __future__ import annotations

from hybrid.discovery import ReplicaRecord
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler, request_of
from tests.hybrid.engine.fakes import ScriptedEngine


class EngineReplica:
    def __init__(self, replica_id: str = "edge-1", tier: str = "edge", **engine_settings):
        self.engine = ScriptedEngine(default_answer="hi there", **engine_settings)
        self.shell = ServerShell("127.0.0.1", 0, [INFERENCE_SERVICE])
        self.shell.server.add_generic_rpc_handlers((inference_handler(self.generate, self.get_load),))
        self.record = ReplicaRecord(
            id=replica_id,
            address="127.0.0.1",
            port=self.shell.port,
            tier=tier,
            model="fake-model",
            precision="int8-b32",
            region="test",
            capacity=self.engine.capacity,
        )

    async def generate(self, message, context):
        async for chunk in self.engine.generate(request_of(message, context)):
            yield chunk.to_proto()

    async def get_load(self, message, context):
        return self.engine.load().to_proto(self.record.id, self.record.model, self.record.precision)

    async def start(self) -> None:
        self.engine.start()
        await self.shell.start()

    async def stop(self) -> None:
        await self.shell.stop(0)
        self.engine.stop()
