"""The open-loop load generator: every arrival is sent at its time, whether or not answers came back.

A closed loop (send, wait, send again) slows down with the server and hides overload; here each
``Arrival`` becomes its own asyncio task at ``start + at_s``. Every arrival ends in exactly one
``Record``: ``OK``, the gRPC status name the target answered with, ``DEADLINE_EXCEEDED`` when the
client's own deadline ran out, or ``CLIENT_ERROR`` for anything else that went wrong on this side.

The target is anything that serves hybrid.v1.Inference: the router, the baseline proxy, a replica.
One process offers one or two thousand requests a second; ``hybrid.bench.loadgen_pool`` runs this
generator in several processes on one shared start and merges their records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import grpc

from hybrid.bench.workload import Arrival
from hybrid.client import AsyncHybridClient, RequestFailed
from hybrid.v1 import inference_pb2 as pb

OK = "OK"
CLIENT_ERROR = "CLIENT_ERROR"
# Past its deadline, a request still unanswered this much later is closed by the generator itself.
_DEADLINE_GRACE_S = 5.0


@dataclass
class Record:
    """One request's outcome. Times are seconds from the run's start; None where the event never came."""

    request_id: str
    priority: str
    phase: str
    affinity_key: str
    scheduled_s: float
    sent_s: float
    first_token_s: float | None = None
    end_s: float = 0.0
    status: str = CLIENT_ERROR
    completion_tokens: int = 0
    prompt_tokens: int = 0
    tier: str = ""
    replica_id: str = ""
    detail: str = ""
    # As the replica measured them, from the request's arrival there (its last chunk's timing): what of the first
    # token's wait was spent in the replica's queue, and at the replica in all; the rest was on the way.
    replica_queue_ms: float | None = None
    replica_ttft_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.sent_s

    @property
    def latency_s(self) -> float:
        return self.end_s - self.sent_s

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        return cls(**data)


@dataclass
class RunResult:
    """All records of one run against one target, and when it ran."""

    name: str
    target: str
    records: list[Record] = field(default_factory=list)
    started_at: float = 0.0  # wall clock (time.time()) at the run's start
    duration_s: float = 0.0  # first scheduled send to the last record's end
    # CPU time the load generator's processes spent sending and reading; past a core's worth a second, it lags.
    generator_cpu_s: float = 0.0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "target": self.target,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "generator_cpu_s": self.generator_cpu_s,
            "records": [r.to_dict() for r in self.records],
        }


async def send_one(
    client: AsyncHybridClient, arrival: Arrival, start: float, chat: bool = True, sent_at: float | None = None
) -> Record:
    """Sends one arrival and waits for its whole answer; never raises (except on cancellation)."""
    now = time.monotonic()
    sent = (sent_at if sent_at is not None else now) - start
    record = Record(
        request_id=arrival.request_id,
        priority=arrival.priority,
        phase=arrival.phase,
        affinity_key=arrival.affinity_key,
        scheduled_s=arrival.at_s,
        sent_s=sent,
    )
    prompt, messages = (None, [{"role": "user", "content": arrival.prompt}]) if chat else (arrival.prompt, None)
    tokens = 0

    async def consume() -> None:
        nonlocal tokens
        async for chunk in client.stream(
            prompt,
            messages,
            timeout_s=arrival.deadline_s,
            max_new_tokens=arrival.max_new_tokens,
            priority=arrival.priority.lower(),
            request_id=arrival.request_id,
            affinity_key=arrival.affinity_key,
        ):
            if record.first_token_s is None:
                record.first_token_s = time.monotonic() - start
            tokens += len(chunk.token_ids)
            if chunk.HasField("served_by"):
                record.tier = pb.Tier.Name(chunk.served_by.tier).lower()
                record.replica_id = chunk.served_by.replica_id
            if chunk.finish_reason:
                record.completion_tokens = chunk.usage.completion_tokens or tokens
                record.prompt_tokens = chunk.usage.prompt_tokens
                if chunk.HasField("timing"):
                    record.replica_queue_ms = chunk.timing.queue_ms
                    record.replica_ttft_ms = chunk.timing.time_to_first_token_ms

    try:
        await asyncio.wait_for(consume(), arrival.deadline_s + _DEADLINE_GRACE_S)
        record.status = OK
    except RequestFailed as failure:
        record.status = failure.code.name
        record.detail = failure.details[:300]
    except asyncio.TimeoutError:
        record.status = grpc.StatusCode.DEADLINE_EXCEEDED.name
        record.detail = "the load generator gave up: no end of stream well past the deadline"
    except Exception as error:  # anything else on this side still ends in a record
        record.status = CLIENT_ERROR
        record.detail = f"{type(error).__name__}: {error}"[:300]
    finally:
        record.end_s = time.monotonic() - start
    if not record.ok:
        record.completion_tokens = 0  # tokens of an answer that did not finish were not served
    return record


def unfinished_record(arrival: Arrival, end_s: float, detail: str) -> Record:
    """The record of an arrival whose own outcome never came back: a CLIENT_ERROR saying why."""
    return Record(
        arrival.request_id,
        arrival.priority,
        arrival.phase,
        arrival.affinity_key,
        arrival.at_s,
        arrival.at_s,
        end_s=end_s,
        status=CLIENT_ERROR,
        detail=detail[:300],
    )


async def _connect(clients: list[AsyncHybridClient], until: float) -> None:
    """Opens every channel before a shared start, so the first requests do not pay for the connection; a target
    that is down is left for the requests to find."""
    try:
        await asyncio.wait_for(
            asyncio.gather(*(c.channel.channel_ready() for c in clients)), max(0.0, until - time.monotonic())
        )
    except asyncio.TimeoutError:
        pass


async def run_open_loop(
    target: str,
    arrivals: list[Arrival],
    name: str = "",
    chat: bool = True,
    on_sent: Callable[[Arrival], None] | None = None,
    on_done: Callable[[Record], None] | None = None,
    start_at: float | None = None,
    channels: int = 1,
) -> RunResult:
    """Sends every arrival at its time; returns one record per arrival.

    ``start_at`` (wall clock, ``time.time()``), where given, is the run's start shared with other generators:
    every time in the records counts from it. ``channels`` spreads the requests over that many gRPC channels,
    each its own connection, in turn."""
    if channels < 1:
        raise ValueError(f"channels is {channels}: send over at least 1 gRPC channel")
    result = RunResult(name=name or target, target=target, started_at=time.time() if start_at is None else start_at)
    # gRPC shares one connection between channels of the same arguments; a local pool gives each its own.
    own_connection = (("grpc.use_local_subchannel_pool", 1),) if channels > 1 else ()
    clients = [AsyncHybridClient(target, timeout_s=None, channel_options=own_connection) for _ in range(channels)]
    ordered = sorted(arrivals, key=lambda a: a.at_s)
    try:
        if start_at is None:
            start = time.monotonic()
        else:
            start = time.monotonic() + (start_at - time.time())
            await _connect(clients, start)
        cpu_at_start = time.process_time()
        tasks: list[asyncio.Task] = []

        def finished(task: asyncio.Task) -> None:
            if on_done is not None and not task.cancelled() and task.exception() is None:
                on_done(task.result())

        for index, arrival in enumerate(ordered):
            delay = start + arrival.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            client = clients[index % channels]
            task = asyncio.ensure_future(send_one(client, arrival, start, chat, sent_at=time.monotonic()))
            task.add_done_callback(finished)
            tasks.append(task)
            if on_sent is not None:
                on_sent(arrival)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        end = time.monotonic() - start
        result.generator_cpu_s = time.process_time() - cpu_at_start
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    for arrival, outcome in zip(ordered, outcomes):
        if isinstance(outcome, BaseException):  # send_one does not raise; a record all the same if it ever did
            outcome = unfinished_record(arrival, end, repr(outcome))
        result.records.append(outcome)
    result.duration_s = max([end, *(r.end_s for r in result.records)])
    return result
