"""A replica without a model: answers every request at a fixed pace, for router benchmarks and fault runs.

It serves the real ``hybrid.v1.Inference`` service through the same server shell as the edge agent,
validates requests the same way, reports its load and pace, registers in discovery and drains on stop,
so the router cannot tell it from a model replica. What it leaves out is the model: each answer is
``max_new_tokens`` tokens, one every ``token_ms`` after a first one at ``first_token_ms``. That makes the
router's own costs (benchmarks) and its reaction to a replica killed, frozen or withdrawn (fault runs)
measurable on a machine whose cores could not run enough real replicas at once.

    python -m hybrid.bench.synthetic --replica-id a --discovery static:FILE --token-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import socket
import time

from pydantic import BaseModel, Field, field_validator

from hybrid import constants, wire
from hybrid.discovery import ReplicaRecord, registry_from_spec
from hybrid.errors import OverloadedError, UnavailableError
from hybrid.protocol import Chunk, FinishReason, ServedBy, Tier, request_from_proto
from hybrid.serving.background import serve_until_signalled
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler
from hybrid.v1 import inference_pb2 as pb

log = logging.getLogger("hybrid.bench.synthetic")


class SyntheticReplicaConfig(BaseModel):
    """A bench tool serves plaintext gRPC, so it listens on loopback only."""

    replica_id: str = Field(description="Its id in discovery and in served_by.")
    tier: str = Field(default="edge", description="edge, private or public: where discovery lists it.")
    host: str = Field(default=constants.DEFAULT_HOST, description="Address to bind.")
    port: int = Field(default=0, ge=0, le=65535, description="Port to bind; 0 picks a free one.")
    model: str = Field(default=constants.DEFAULT_MODEL, description="Model name it claims to serve.")
    precision: str = Field(default="int8", description="Precision it claims to run.")
    region: str = Field(default=constants.DEFAULT_REGION, description="Region it reports.")
    capacity: int = Field(default=32, ge=1, description="Answers streamed at once; more are RESOURCE_EXHAUSTED.")
    first_token_ms: float = Field(default=0.0, ge=0, description="Time before an answer's first token.")
    token_ms: float = Field(default=10.0, ge=0, description="Time between two tokens of one answer.")
    discovery: str = Field(default="none", description="Where it registers: static:FILE, consul, ... or none.")
    drain_grace_s: float = Field(
        default=constants.DRAIN_GRACE_S, ge=0, description="How long stop() lets answers finish."
    )

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, host: str) -> str:
        if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
            raise ValueError(f"a synthetic replica listens on loopback only (127.0.0.1, localhost), not {host!r}")
        return host


class SyntheticReplica:
    """``start`` serves and registers, ``stop`` deregisters and drains: the shape ``ServerProcess`` runs."""

    def __init__(self, config: SyntheticReplicaConfig):
        self.config = config
        self.shell = ServerShell(config.host, config.port, [INFERENCE_SERVICE])
        self.shell.server.add_generic_rpc_handlers((inference_handler(self._generate, self._get_load),))
        self.address = self.shell.address
        self.registry = registry_from_spec(config.discovery)
        self.served_by = ServedBy(Tier.parse(config.tier), config.replica_id, config.region, config.precision)
        self.active = 0
        self._draining = False

    def record(self) -> ReplicaRecord:
        host, port = self.address.rsplit(":", 1)
        c = self.config
        return ReplicaRecord(
            id=c.replica_id, address=host, port=int(port), tier=c.tier, model=c.model,
            precision=c.precision, region=c.region, capacity=c.capacity,
        )  # fmt: skip

    async def start(self) -> None:
        await self.shell.start()
        if self.registry is not None:
            await asyncio.to_thread(self.registry.register, self.record())
        log.info("synthetic replica %s ready on %s", self.config.replica_id, self.address)

    async def stop(self) -> None:
        self._draining = True
        if self.registry is not None:
            await asyncio.to_thread(self.registry.deregister, self.config.replica_id)
        await self.shell.set_not_serving()
        deadline = time.monotonic() + self.config.drain_grace_s
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.shell.stop(0)

    async def _generate(self, message: pb.GenerateRequest, context):
        request = request_from_proto(message, wire.deadline_of(context))
        if self._draining:
            raise UnavailableError("this replica is shutting down; retry on another replica")
        if self.active >= self.config.capacity:
            raise OverloadedError("every slot of this replica is busy", int(self.config.token_ms * 4) + 1)
        self.active += 1
        try:
            async for chunk in self._answer(request.request_id, request.max_new_tokens, request.arrived_at):
                yield chunk.to_proto()
        finally:
            self.active -= 1

    async def _answer(self, request_id: str, tokens: int, arrived_at: float):
        await asyncio.sleep(self.config.first_token_ms / 1000)
        first_at = time.monotonic()
        for index in range(tokens):
            if index:
                await asyncio.sleep(self.config.token_ms / 1000)
            if index < tokens - 1:
                yield Chunk(request_id, "x", [index + 3], served_by=self.served_by)
                continue
            now = time.monotonic()
            yield Chunk(
                request_id, "x", [index + 3], served_by=self.served_by, finish_reason=FinishReason.LENGTH,
                prompt_tokens=1, completion_tokens=tokens, time_to_first_token_ms=(first_at - arrived_at) * 1000,
                total_ms=(now - arrived_at) * 1000,
            )  # fmt: skip

    async def _get_load(self, message: pb.GetLoadRequest, context) -> pb.LoadReport:
        c = self.config
        return pb.LoadReport(
            replica_id=c.replica_id, model=c.model, precision=c.precision, active=self.active,
            capacity=c.capacity, draining=self._draining, token_ms_base=c.token_ms,
            recent_ttft_p90_ms=c.first_token_ms,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, field in SyntheticReplicaConfig.model_fields.items():
        kind = type(field.default) if field.default is not None and not field.is_required() else str
        parser.add_argument(
            "--" + name.replace("_", "-"), type=kind, default=None if field.is_required() else field.default,
            required=field.is_required(), help=field.description,
        )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve_until_signalled(SyntheticReplica(SyntheticReplicaConfig(**vars(args)))))


if __name__ == "__main__":
    main()
