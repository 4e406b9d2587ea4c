"""A real router with its HTTP front in front of scripted replicas of every tier, on a loop of its own thread:
for the tests that read the status from outside (the CLI in a subprocess, the page in a browser)."""

from __future__ import annotations

from hybrid.client import build_request
from hybrid.router.server import Router, RouterConfig
from hybrid.serving.background import BackgroundLoop
from hybrid.v1 import inference_pb2_grpc as pb_grpc
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource

# Replica id, tier and price per hour.
REPLICAS = (("edge-1", "edge", 0.05), ("private-1", "private", 1.2), ("public-1", "public", 3.4))


class StatusFleet(BackgroundLoop):
    def __init__(self):
        super().__init__("status-fleet")
        self.replicas = self.call(self._start_replicas())
        config = RouterConfig(port=0, http_port=0, host="127.0.0.1", discovery="memory", poll_interval_s=0.2)
        source = MemorySource([r.record for r in self.replicas])
        self.router: Router = self.start_server(lambda c: Router(c, source=source), config)
        self.http_address = self.router.http_address

    @staticmethod
    async def _start_replicas() -> list[FakeReplica]:
        replicas = []
        for replica_id, tier, price in REPLICAS:
            replica = FakeReplica(replica_id, tier, scripts.answers)
            replica.record = replica.record.model_copy(update={"cost_per_hour": price})
            await replica.shell.start()
            replicas.append(replica)
        return replicas

    def send(self, count: int, priority: str = "interactive") -> None:
        """``count`` requests, each with a prompt of its own (none turns hot), answered in full."""

        async def ask_all() -> None:
            import grpc.aio

            async with grpc.aio.insecure_channel(self.router.address) as channel:
                stub = pb_grpc.InferenceStub(channel)
                for index in range(count):
                    request = build_request(f"{priority} question {index}", priority=priority)
                    [chunk async for chunk in stub.Generate(request, timeout=5)]

        self.call(ask_all())

    def fail_everywhere(self, priority: str = "interactive") -> None:
        """One request that every replica fails before its first token (UNAVAILABLE); the replicas answer again
        afterwards."""

        async def ask_once() -> None:
            import grpc.aio

            for replica in self.replicas:
                replica.script = scripts.fails_at_once
            try:
                async with grpc.aio.insecure_channel(self.router.address) as channel:
                    request = build_request(f"{priority} doomed", priority=priority)
                    try:
                        [chunk async for chunk in pb_grpc.InferenceStub(channel).Generate(request, timeout=5)]
                    except grpc.aio.AioRpcError as error:
                        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            finally:
                for replica in self.replicas:
                    replica.script = scripts.answers

        self.call(ask_once())

    def stop(self) -> None:
        async def stop_all() -> None:
            await self.router.stop()
            for replica in self.replicas:
                await replica.shell.stop(0)

        self.call(stop_all())
        self.close()
