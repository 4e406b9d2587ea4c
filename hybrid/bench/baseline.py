"""The baseline of the overload bench: the same replicas behind plain round-robin.

This is the "unoptimized setup" the overload bench compares the router with: a real hybrid.v1.Inference
gRPC server (the same ``ServerShell`` and ``inference_handler`` as every Hybrid server) that hands
each Generate to the next replica of a fixed list and streams the answer back. It has no
priorities, no tiers, no load or deadline awareness, no spillover and no retry: whatever the
replica answers, the caller gets, error status and retry hint included.

    baseline = ServerProcess(RoundRobinProxy, BaselineConfig(port=0, replicas=[record, ...]), "baseline")
    ... send to baseline.address ...
    baseline.stop()
"""

from __future__ import annotations

import itertools
import logging

import grpc
from pydantic import BaseModel, Field, field_validator

from hybrid import constants, wire
from hybrid.discovery import ReplicaRecord
from hybrid.security.tls import TlsSettings, secure_channel
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import inference_pb2_grpc as pb_grpc

log = logging.getLogger("hybrid.bench.baseline")


class BaselineConfig(BaseModel):
    host: str = Field(default=constants.DEFAULT_HOST, description="Address the gRPC server binds.")
    port: int = Field(default=0, ge=0, le=65535, description="gRPC port; 0 picks one.")
    replicas: list[ReplicaRecord] = Field(description="The replicas, in round-robin order.")
    drain_grace_s: float = Field(default=5.0, ge=0, description="Streams' time to finish on stop.")
    tls: TlsSettings = Field(
        default_factory=TlsSettings,
        description="Mutual TLS of its server and of its channels to the replicas, as the router has it.",
    )

    @field_validator("replicas")
    @classmethod
    def _some(cls, replicas: list[ReplicaRecord]) -> list[ReplicaRecord]:
        if not replicas:
            raise ValueError("the baseline needs at least one replica to forward to")
        return replicas


class RoundRobinProxy:
    """``start`` serves, ``stop`` drains. Build it inside the event loop it will run on."""

    def __init__(self, config: BaselineConfig):
        self.config = config
        self.shell = ServerShell(config.host, config.port, [INFERENCE_SERVICE], tls=config.tls)
        self.address = self.shell.address
        self.replicas = list(config.replicas)
        self._channels = [secure_channel(f"{r.address}:{r.port}", config.tls) for r in self.replicas]
        self._stubs = [pb_grpc.InferenceStub(channel) for channel in self._channels]
        self._next = itertools.count()
        self.sent = [0] * len(self.replicas)
        self.shell.server.add_generic_rpc_handlers((inference_handler(self.generate, self.get_load),))

    def pick(self) -> int:
        """The next replica's index: round robin, nothing else."""
        return next(self._next) % len(self.replicas)

    async def generate(self, message: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        index = self.pick()
        self.sent[index] += 1
        record = self.replicas[index]
        remaining = context.time_remaining()
        call = self._stubs[index].Generate(message, timeout=remaining, metadata=wire.call_metadata(record.application, remaining))
        finished = False
        try:
            async for response in call:
                yield response
            finished = True
        except grpc.aio.AioRpcError as error:
            finished = True
            trailing = error.trailing_metadata() or ()
            hint = [(k, v) for k, v in trailing if k in (wire.RETRY_AFTER_KEY, "grpc-status-details-bin")]
            if hint:
                context.set_trailing_metadata(tuple(hint))
            await context.abort(error.code(), error.details() or error.code().name)
        finally:
            if not finished:
                call.cancel()  # the caller went away: release the replica's slot now

    async def get_load(self, message: pb.GetLoadRequest, context: grpc.aio.ServicerContext) -> pb.LoadReport:
        return pb.LoadReport(replica_id="baseline", capacity=sum(r.capacity for r in self.replicas))

    async def start(self) -> None:
        await self.shell.start()
        log.info(
            "baseline round-robin ready on %s over %d replicas: %s",
            self.address,
            len(self.replicas),
            ", ".join(f"{r.id}@{r.address}:{r.port}" for r in self.replicas),
        )

    async def stop(self) -> None:
        await self.shell.stop(self.config.drain_grace_s)
        for channel in self._channels:
            await channel.close()
