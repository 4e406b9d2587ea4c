"""API keys at a real router on loopback, over gRPC and over the OpenAI front, in front of scripted replicas.

Who may call (UNAUTHENTICATED / 401), at which priorities (PERMISSION_DENIED / 403), how much (RESOURCE_EXHAUSTED
with the retry hint / 429 with Retry-After), the stream slots a key holds however its calls end, and its usage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager

import grpc
import openai
import pytest
from prometheus_client import generate_latest

from hybrid import wire
from hybrid.client import AsyncHybridClient, RequestFailed, build_request
from hybrid.router.server import Router, RouterConfig
from hybrid.security.keys import KeyLimits, add_key
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import inference_pb2_grpc as pb_grpc
from hybrid.v1 import router_admin_pb2 as admin_pb
from hybrid.v1 import router_admin_pb2_grpc as admin_grpc
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource, chunk
from tests.hybrid.router.openai.conftest import call
from tests.hybrid.router.test_dataplane import settled

pytestmark = pytest.mark.timeout(20)

PROMPT_TOKENS = 7
COST_PER_HOUR = 3.6


async def answers_with_usage(replica: FakeReplica, message: pb.GenerateRequest):
    """Three tokens in two chunks; the last carries the usage, as a real replica's does."""
    yield chunk(message, [1, 2])
    last = chunk(message, [3], last=True)
    last.usage.CopyFrom(pb.Usage(prompt_tokens=PROMPT_TOKENS, completion_tokens=3))
    yield last


class Keys:
    """A key file made at test time: the keys themselves exist only here."""

    def __init__(self, folder):
        self.path = folder / "keys.yaml"
        self.alice = add_key(self.path, "alice", ("interactive", "batch"), KeyLimits(requests_per_s=0.5, burst=2))
        self.bob = add_key(self.path, "bob", ("realtime", "interactive", "batch"))
        self.carol = add_key(self.path, "carol", limits=KeyLimits(streams=1))
        self.dave = add_key(self.path, "dave", limits=KeyLimits(tokens_per_min=12))
        self.ops = add_key(self.path, "ops", admin=True)

    def all(self) -> list[str]:
        return [self.alice, self.bob, self.carol, self.dave, self.ops]


@pytest.fixture
def keys(tmp_path) -> Keys:
    return Keys(tmp_path)


@asynccontextmanager
async def keyed_router(keys: Keys, script=answers_with_usage):
    replica = FakeReplica("edge-1", "edge", script)
    replica.record = replica.record.model_copy(update={"cost_per_hour": COST_PER_HOUR})
    await replica.shell.start()
    config = RouterConfig(
        host="127.0.0.1", port=0, http_port=0, discovery="memory", poll_interval_s=60, keys=str(keys.path)
    )
    router = Router(config, source=MemorySource([replica.record]))
    await router.start()
    channel = grpc.aio.insecure_channel(router.address)
    try:
        yield router, pb_grpc.InferenceStub(channel), channel
    finally:
        await channel.close()
        await router.stop()
        await replica.shell.stop(0)


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return wire.call_metadata(api_key=key)


async def generate(stub, key: str | None, priority: str = "interactive") -> list[pb.GenerateResponse]:
    metadata = bearer(key) if key else ()
    request = build_request("hello there", priority=priority, max_new_tokens=3)
    return [r async for r in stub.Generate(request, timeout=5, metadata=metadata)]


async def refusal(stub, key: str | None, priority: str = "interactive") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await generate(stub, key, priority)
    return refused.value


async def post(router: Router, key: str | None, body: dict | None = None, headers: dict | None = None):
    auth = {"authorization": f"Bearer {key}"} if key else {}
    chat = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}
    return await call(router._http, "/v1/chat/completions", body or chat, auth | (headers or {}))


async def test_no_key_or_a_wrong_key_is_unauthenticated_and_401(keys):
    async with keyed_router(keys) as (router, stub, _):
        for key in (None, "hyb_" + "x" * 43, keys.alice + "x"):
            error = await refusal(stub, key)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
            answer = await post(router, key)
            assert answer.status == 401 and answer.error["type"] == "authentication_error"
            assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "authorization: Bearer" in (await refusal(stub, None)).details()
        bad_scheme = await call(router._http, "/v1/models", None, {"authorization": f"Basic {keys.bob}"})
        assert bad_scheme.status == 401
        assert (await generate(stub, keys.bob))[-1].finish_reason == pb.STOP
        # 4 over gRPC, 3 over HTTP, 1 of another scheme.
        assert router.dataplane.metrics.registry.get_sample_value("hybrid_router_unauthenticated_total") == 8


async def test_a_key_without_realtime_is_permission_denied_and_403(keys):
    async with keyed_router(keys) as (router, stub, _):
        error = await refusal(stub, keys.alice, "realtime")
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'alice' may not send REALTIME" in error.details() and "interactive, batch" in error.details()
        answer = await post(router, keys.carol, headers={"x-hybrid-priority": "realtime"})
        assert answer.status == 403 and answer.error["type"] == "permission_error"
        # The privilege is the key's: bob holds it.
        assert (await generate(stub, keys.bob, "realtime"))[-1].finish_reason == pb.STOP
        assert (await post(router, keys.bob, headers={"x-hybrid-priority": "realtime"})).status == 200


async def test_a_burst_beyond_the_bucket_is_429_with_retry_after_while_another_key_is_unaffected(keys):
    async with keyed_router(keys) as (router, stub, _):
        statuses = [(await post(router, keys.alice)).status for _ in range(2)]
        assert statuses == [200, 200]  # the burst of 2
        over = await post(router, keys.alice)
        assert over.status == 429 and over.error["type"] == "rate_limit_error"
        # Refilled at 0.5 request/s: the next request fits in about 2 s.
        assert 1 <= int(over.headers["retry-after"]) <= 2
        assert "alice" in over.error["message"] and "requests/s" in over.error["message"]
        # The same bucket over gRPC: RESOURCE_EXHAUSTED with the typed retry hint.
        error = await refusal(stub, keys.alice)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 0 < wire.retry_after_ms(error.trailing_metadata()) <= 2000
        for _ in range(5):
            assert (await post(router, keys.bob)).status == 200
            assert (await generate(stub, keys.bob))[-1].finish_reason == pb.STOP


async def test_the_openai_client_sees_rate_limit_error_with_retry_after(keys):
    async with keyed_router(keys) as (router, _, _):
        async with openai.AsyncOpenAI(
            base_url=f"http://{router.http_address}/v1", api_key=keys.alice, max_retries=0
        ) as client:
            messages = [{"role": "user", "content": "hi"}]
            for _ in range(2):
                await client.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=3)
            with pytest.raises(openai.RateLimitError) as limited:
                await client.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=3)
            assert int(limited.value.response.headers["retry-after"]) >= 1
        async with openai.AsyncOpenAI(
            base_url=f"http://{router.http_address}/v1", api_key="wrong", max_retries=0
        ) as client:
            with pytest.raises(openai.AuthenticationError):
                await client.models.list()


async def test_tokens_per_minute_refuse_new_calls_once_spent_with_a_hint(keys):
    async with keyed_router(keys) as (router, stub, _):
        # 12 tokens a minute; one answer charges its 7 prompt tokens and 3 completion tokens.
        await generate(stub, keys.dave)
        await generate(stub, keys.dave)  # admitted with 2 left; overdraws the bucket to -8
        error = await refusal(stub, keys.dave)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "tokens per minute" in error.details()
        # 9 tokens to refill at 12 a minute: about 45 s.
        assert 40_000 <= wire.retry_after_ms(error.trailing_metadata()) <= 46_000
        assert (await generate(stub, keys.bob))[-1].finish_reason == pb.STOP


async def test_a_stream_cancelled_midway_releases_its_slot(keys):
    async with keyed_router(keys, scripts.streams_slowly) as (router, stub, _):
        guard = router.dataplane.guard
        call_ = stub.Generate(build_request("hello", max_new_tokens=10), timeout=5, metadata=bearer(keys.carol))
        await call_.read()
        assert guard.streams_open("carol") == 1
        busy = await refusal(stub, keys.carol)
        assert busy.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "concurrent streams" in busy.details()
        call_.cancel()
        assert await settled(lambda: guard.streams_open("carol") == 0)
        assert (await generate(stub, keys.carol))[-1].finish_reason == pb.STOP
        assert guard.streams_open("carol") == 0


async def test_a_stream_past_its_deadline_or_failing_releases_its_slot(keys):
    async with keyed_router(keys, scripts.stalls_after_one_chunk) as (router, stub, _):
        request = build_request("hello", max_new_tokens=3)
        with pytest.raises(grpc.aio.AioRpcError) as late:
            async for _ in stub.Generate(request, timeout=0.3, metadata=bearer(keys.carol)):
                pass
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert await settled(lambda: router.dataplane.guard.streams_open("carol") == 0)
    async with keyed_router(keys, scripts.fails_at_once) as (router, stub, _):
        for _ in range(2):  # the second would be refused for streams if the first held its slot
            assert (await refusal(stub, keys.carol)).code() == grpc.StatusCode.UNAVAILABLE
        assert router.dataplane.guard.streams_open("carol") == 0


async def test_an_http_stream_the_client_leaves_releases_its_slot(keys):
    async with keyed_router(keys, scripts.streams_slowly) as (router, _, _):
        guard = router.dataplane.guard
        async with openai.AsyncOpenAI(
            base_url=f"http://{router.http_address}/v1", api_key=keys.carol, max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": "hi"}], max_tokens=10, stream=True
            )
            await anext(aiter(stream))
            assert guard.streams_open("carol") == 1
            await stream.close()
        assert await settled(lambda: guard.streams_open("carol") == 0, within_s=3)


async def test_usage_per_key_is_the_sum_of_the_usage_the_answers_carried(keys):
    began = time.monotonic()
    async with keyed_router(keys) as (router, stub, _):
        carried: dict[str, list[pb.Usage]] = {"bob": [], "carol": []}
        for name, key in (("bob", keys.bob), ("carol", keys.carol), ("bob", keys.bob)):
            carried[name].append((await generate(stub, key))[-1].usage)
        async with AsyncHybridClient(router.address, api_key=keys.bob) as client:
            carried["bob"].append((await client.complete(prompt="hi", max_new_tokens=3)).usage)
        for name, key in (("carol", keys.carol), ("bob", keys.bob)):
            answer = await post(router, key)
            usage = json.loads(answer.text)["usage"]
            carried[name].append(
                pb.Usage(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"])
            )
        await refusal(stub, keys.alice, "realtime")  # refused: counted as such, not as usage

        answer = await call(router._http, "/v1/usage", None, {"authorization": f"Bearer {keys.ops}"})
        assert answer.status == 200, answer.text
        rows = {row["key"]: row for row in json.loads(answer.text)["keys"]}
        for name, usages in carried.items():
            assert rows[name]["requests"] == len(usages)
            assert rows[name]["prompt_tokens"] == sum(u.prompt_tokens for u in usages)
            assert rows[name]["completion_tokens"] == sum(u.completion_tokens for u in usages)
            assert rows[name]["cost_dollars"] > 0
        assert rows["alice"]["requests"] == 0 and rows["alice"]["refused"] == 1
        # No more than the replica's price for the time it served (test_key_accounting.py checks the split).
        dollars = sum(row["cost_dollars"] for row in rows.values())
        assert dollars <= COST_PER_HOUR * (time.monotonic() - began) / 3600

        exposed = generate_latest(router.dataplane.metrics.registry).decode()
        assert 'hybrid_router_key_completion_tokens_total{key="bob"} 12.0' in exposed
        assert not any(key in exposed for key in keys.all())


async def test_usage_status_and_router_admin_need_an_admin_key(keys):
    async with keyed_router(keys) as (router, _, channel):
        for key, status in ((None, 401), (keys.bob, 403)):
            headers = {"authorization": f"Bearer {key}"} if key else {}
            assert (await call(router._http, "/v1/usage", None, headers)).status == status
            assert (await call(router._http, "/status.json", None, headers)).status == status
        status = await call(router._http, "/status.json", None, {"authorization": f"Bearer {keys.ops}"})
        assert status.status == 200 and "edge-1" in status.text
        assert (await call(router._http, "/status")).status == 200, "the page holds no figures: it asks for them"
        admin = admin_grpc.RouterAdminStub(channel)
        for key, code in ((None, grpc.StatusCode.UNAUTHENTICATED), (keys.bob, grpc.StatusCode.PERMISSION_DENIED)):
            metadata = bearer(key) if key else ()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.ListReplicas(admin_pb.ListReplicasRequest(), metadata=metadata)
            assert refused.value.code() == code
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.Explain(build_request("hi"), metadata=metadata)
            assert refused.value.code() == code
        replicas = await admin.ListReplicas(admin_pb.ListReplicasRequest(), metadata=bearer(keys.ops))
        assert [r.replica_id for r in replicas.replicas] == ["edge-1"]
        assert (await admin.Explain(build_request("hi"), metadata=bearer(keys.ops))).chosen.replica_id == "edge-1"


async def test_a_key_revoked_while_the_router_runs_is_refused_and_one_added_is_served(keys):
    from hybrid.security.keys import revoke_key

    async with keyed_router(keys) as (router, stub, _):
        assert (await generate(stub, keys.bob))[-1].finish_reason == pb.STOP
        revoke_key(keys.path, "bob")
        erin = add_key(keys.path, "erin")
        # The router looks at the file every second, on a thread of its own.
        assert await eventually(lambda: refused_with(stub, keys.bob, grpc.StatusCode.UNAUTHENTICATED))
        assert (await generate(stub, erin))[-1].finish_reason == pb.STOP
        # A file broken by a half-done edit keeps the keys read before.
        keys.path.write_text("keys: [oops")
        await asyncio.sleep(1.5)
        # Load polls are off here: a poll now stands for the ones that would have come during the wait, or
        # the replica's silence since its last chunk would read as a stall.
        await router.view.poll_once()
        assert (await generate(stub, erin))[-1].finish_reason == pb.STOP
        assert (await refusal(stub, keys.bob)).code() == grpc.StatusCode.UNAUTHENTICATED


async def refused_with(stub, key: str, code: grpc.StatusCode) -> bool:
    try:
        await generate(stub, key)
    except grpc.aio.AioRpcError as error:
        return error.code() == code
    return False


async def eventually(check, within_s: float = 5.0) -> bool:
    """Whether the async ``check`` comes true within ``within_s``."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def test_the_key_never_appears_in_the_logs(keys, caplog):
    from hybrid.security.keys import revoke_key

    caplog.set_level(logging.DEBUG)
    async with keyed_router(keys) as (router, stub, _):
        await generate(stub, keys.bob)
        await refusal(stub, keys.alice, "realtime")
        await refusal(stub, keys.bob + "x")
        for _ in range(3):
            await post(router, keys.alice)
        await call(router._http, "/v1/usage", None, {"authorization": f"Bearer {keys.ops}"})
        revoke_key(keys.path, "carol")
        assert await eventually(lambda: refused_with(stub, keys.carol, grpc.StatusCode.UNAUTHENTICATED))
    assert caplog.records, "the router logged nothing at all: the check below would prove nothing"
    for key in keys.all():
        assert key not in caplog.text and key[len("hyb_") :] not in caplog.text


async def test_without_keys_the_router_serves_anyone_and_has_no_usage(tmp_path):
    replica = FakeReplica("edge-1", "edge", answers_with_usage)
    await replica.shell.start()
    router = Router(
        RouterConfig(port=0, http_port=0, discovery="memory", poll_interval_s=60),
        source=MemorySource([replica.record]),
    )
    await router.start()
    try:
        async with AsyncHybridClient(router.address) as client:
            assert (await client.complete(prompt="hi", max_new_tokens=3)).usage.completion_tokens == 3
        assert (await call(router._http, "/v1/usage")).status == 404
    finally:
        await router.stop()
        await replica.shell.stop(0)


async def test_a_client_gets_its_key_refusal_as_request_failed(keys):
    async with keyed_router(keys) as (router, _, _):
        async with AsyncHybridClient(router.address, api_key="hyb_wrong") as client:
            with pytest.raises(RequestFailed) as failed:
                await client.complete(prompt="hi", max_new_tokens=3)
            assert failed.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_the_usage_command_prints_every_keys_usage_for_an_admin_key(keys, capsys):
    from hybrid.cli import main

    async with keyed_router(keys) as (router, stub, _):
        await generate(stub, keys.bob)
        await generate(stub, keys.bob)
        capsys.readouterr()
        assert (
            await asyncio.to_thread(main, ["usage", "--router", router.http_address, "--key", keys.ops, "--json"]) == 0
        )
        rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)["keys"]}
        assert (rows["bob"]["requests"], rows["bob"]["completion_tokens"]) == (2, 6)
        assert await asyncio.to_thread(main, ["usage", "--router", router.http_address, "--key", keys.ops]) == 0
        table = capsys.readouterr().out
        assert "bob" in table and "total" in table and keys.ops not in table
        assert await asyncio.to_thread(main, ["usage", "--router", router.http_address, "--key", keys.bob]) == 2
        assert "403" in capsys.readouterr().err
