"""The OpenAI front on loopback in front of a fake data plane: real HTTP, no model, each case well under a second."""

from __future__ import annotations

import asyncio
import http.client
import json
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from hybrid.protocol import GenerationRequest
from hybrid.router.openai import OpenAIFront
from hybrid.router.openai.limits import HTTPLimits
from hybrid.v1 import inference_pb2 as pb

MODEL = "tiny-model"
REPLICA = "edge-1"


def chunks(*texts: str, finish=pb.LENGTH) -> list[pb.GenerateResponse]:
    """An answer as a replica streams it: where it is served first, usage and timing last."""
    served = pb.ServedBy(tier=pb.EDGE, replica_id=REPLICA, region="eu-west", precision="int8")
    answer = [pb.GenerateResponse(text=text) for text in texts]
    answer[0].served_by.CopyFrom(served)
    answer[-1].finish_reason = finish
    answer[-1].usage.CopyFrom(pb.Usage(prompt_tokens=7, completion_tokens=len(texts)))
    answer[-1].timing.CopyFrom(pb.Timing(queue_ms=1.5, time_to_first_token_ms=12.0, total_ms=40.0))
    return answer


@dataclass
class _Record:
    id: str
    model: str


@dataclass
class _Replica:
    record: _Record


@dataclass
class FakeView:
    replicas_: list[_Replica] = field(default_factory=lambda: [_Replica(_Record(REPLICA, MODEL))])

    def refresh(self) -> None:
        pass

    def replicas(self) -> list[_Replica]:
        return self.replicas_


class FakeDataPlane:
    """What the front calls on RouterDataPlane. ``script`` is what ``generate`` yields: chunks, pauses
    (a float, in seconds) and errors (raised where they stand)."""

    def __init__(self):
        self.view = FakeView()
        self.script: list[Any] = chunks("Hello", ",", " world")
        self.calls: list[tuple[GenerationRequest, pb.GenerateRequest]] = []
        self.closed = asyncio.Event()

    @property
    def message(self) -> pb.GenerateRequest:
        """The wire request of the last call."""
        return self.calls[-1][1]

    # Keys are off: anyone may call (tests/hybrid/router/test_keys.py drives the real data plane with keys).
    usage = None

    def caller(self, authorization: str | None) -> None:
        return None

    def require_admin(self, authorization: str | None) -> None:
        pass

    async def generate(self, request: GenerationRequest, message: pb.GenerateRequest, caller=None):
        self.calls.append((request, message))
        try:
            for step in self.script:
                if isinstance(step, BaseException):
                    raise step
                if isinstance(step, float):
                    await asyncio.sleep(step)
                else:
                    yield step
        finally:
            self.closed.set()


@pytest.fixture
def dataplane() -> FakeDataPlane:
    return FakeDataPlane()


@pytest.fixture
def limits() -> HTTPLimits:
    return HTTPLimits(body_timeout_s=0.3, head_timeout_s=0.3)


@pytest.fixture
async def front(dataplane, limits):
    server = OpenAIFront(dataplane, "127.0.0.1", 0, drain_grace_s=1.0, limits=limits)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(front):
    async with openai.AsyncOpenAI(base_url=f"http://{front.address}/v1", api_key="unused", max_retries=0) as client:
        yield client


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def error(self) -> dict[str, Any]:
        return json.loads(self.text)["error"]


async def call(
    front: OpenAIFront, path: str, body: bytes | dict | None = None, headers: dict[str, str] | None = None
) -> Answer:
    """One HTTP request with the standard library's client, off the event loop the server runs on."""

    def exchange() -> Answer:
        host, port = front.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            method = "GET" if data is None else "POST"
            connection.request(method, path, body=data, headers={"content-type": "application/json", **(headers or {})})
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode())
        finally:
            connection.close()

    return await asyncio.to_thread(exchange)


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **fields}
