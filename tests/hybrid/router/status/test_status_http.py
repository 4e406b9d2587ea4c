"""/status.json and /status on a real router's HTTP front, in front of scripted replicas on loopback."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from contextlib import asynccontextmanager

import grpc
import pytest

from hybrid.client import build_request
from hybrid.router.server import Router, RouterConfig
from hybrid.router.status.books import SPILL_FULL, SPILL_RETRIED
from hybrid.v1 import inference_pb2_grpc as pb_grpc
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource

pytestmark = pytest.mark.timeout(20)


@asynccontextmanager
async def served(*replicas: FakeReplica):
    for replica in replicas:
        await replica.shell.start()
    config = RouterConfig(port=0, http_port=0, host="127.0.0.1", discovery="memory", poll_interval_s=0.2)
    router = Router(config, source=MemorySource([r.record for r in replicas]))
    await router.start()
    channel = grpc.aio.insecure_channel(router.address)
    try:
        yield router, pb_grpc.InferenceStub(channel)
    finally:
        await channel.close()
        await router.stop()
        for replica in replicas:
            await replica.shell.stop(0)


async def fetch(router: Router, path: str) -> tuple[int, str, bytes]:
    def get() -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(f"http://{router.http_address}{path}", timeout=5) as answer:
                return answer.status, answer.headers["content-type"], answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["content-type"], error.read()

    return await asyncio.to_thread(get)


async def status(router: Router, query: str = "") -> dict:
    code, content_type, body = await fetch(router, f"/status.json{query}")
    assert code == 200 and content_type.startswith("application/json")
    return json.loads(body)


def priced(replica: FakeReplica, cost_per_hour: float) -> FakeReplica:
    replica.record = replica.record.model_copy(update={"cost_per_hour": cost_per_hour})
    return replica


async def test_status_json_lists_every_replica_and_counts_what_requests_did():
    private = priced(FakeReplica("priv-1", "private", scripts.answers), 3.6)
    public = priced(FakeReplica("pub-1", "public", scripts.answers), 7.2)
    async with served(private, public) as (router, stub):
        before = await status(router)
        assert [(r["id"], r["tier"], r["state"]) for r in before["replicas"]] == [
            ("priv-1", "private", "serving"),
            ("pub-1", "public", "serving"),
        ]
        assert before["mix"]["by_class"] == {} and before["cost"]["cost_per_million_tokens"] is None
        assert before["success"]["rate"] is None

        for index in range(4):  # prompts of their own: none turns hot
            [r async for r in stub.Generate(build_request(f"question {index}", priority="interactive"), timeout=5)]
        [r async for r in stub.Generate(build_request("a batch job", priority="batch"), timeout=5)]

        after = await status(router)
        assert after["mix"]["by_class"] == {"cold INTERACTIVE": {"private": 4}, "BATCH": {"public": 1}}
        assert sum(after["mix"]["per_minute"][-1]["by_tier"].values()) == 5
        assert after["success"]["answered"] == 5 and after["success"]["rate"] == 1.0 and after["success"]["met"]
        cost = after["cost"]
        assert cost["completion_tokens"] == 15  # three tokens an answer
        assert cost["tiers"]["private"]["completion_tokens"] == 12 and cost["tiers"]["public"]["completion_tokens"] == 3
        # Provisioned: both replicas' price over the time covered, over every token served.
        expected = (3.6 + 7.2) * cost["duration_s"] / 3600 / 15 * 1e6
        assert cost["cost_per_million_tokens"] == pytest.approx(expected, rel=1e-6)
        assert after["ttft"]["by_class"]["all"]["count"] == 5
        rows = {r["id"]: r for r in after["replicas"]}
        assert rows["priv-1"]["rtt_ms"] is not None and rows["priv-1"]["cost_per_hour"] == 3.6


async def test_a_spillover_and_a_failure_show_with_their_reasons():
    full = FakeReplica("priv-1", "private", scripts.fails_at_once)
    spare = FakeReplica("pub-1", "public", scripts.answers)
    async with served(full, spare) as (router, stub):
        [r async for r in stub.Generate(build_request("hello", priority="interactive"), timeout=5)]
        document = await status(router)
        assert document["spillovers"] == [
            {"from_tier": "private", "to_tier": "public", "reason": SPILL_RETRIED, "count": 1}
        ]
        # Retried elsewhere and answered: the request succeeded, the failed call is in the last failures.
        assert document["success"] == {**document["success"], "answered": 1, "failed": 0, "retried": 1}
        [failure] = document["last_failures"]
        assert (failure["replica"], failure["tier"], failure["outcome"]) == ("priv-1", "private", "unavailable")


async def test_a_full_replica_is_a_spillover_not_a_failure():
    full = FakeReplica("priv-1", "private", scripts.is_full)
    spare = FakeReplica("pub-1", "public", scripts.answers)
    async with served(full, spare) as (router, stub):
        [r async for r in stub.Generate(build_request("hello", priority="interactive"), timeout=5)]
        document = await status(router)
        assert [s["reason"] for s in document["spillovers"]] == [SPILL_FULL]
        assert document["success"]["rate"] == 1.0 and document["last_failures"] == []


async def test_a_refused_request_counts_against_the_success_rate():
    full = FakeReplica("priv-1", "private", scripts.is_full)
    async with served(full) as (router, stub):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            [r async for r in stub.Generate(build_request("hello", priority="interactive"), timeout=5)]
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        document = await status(router)
        assert document["success"]["rate"] == 0.0 and document["success"]["met"] is False
        assert document["mix"]["by_class"]["cold INTERACTIVE"] == {"private": 1, "none": 1}
        assert document["last_failures"][0]["outcome"] == "resource_exhausted"
        assert "no tier has room" in document["last_failures"][0]["detail"]


async def test_the_page_and_its_assets_are_served_from_the_package():
    async with served(FakeReplica("priv-1", "private", scripts.answers)) as (router, _):
        code, content_type, page = await fetch(router, "/status")
        assert code == 200 and content_type.startswith("text/html")
        assert b"status/status.js" in page and b"http" not in page.replace(b"http-equiv", b"")  # nothing from elsewhere
        for asset, kind in (("status.js", "text/javascript"), ("status.css", "text/css")):
            code, content_type, body = await fetch(router, f"/status/{asset}")
            assert code == 200 and content_type.startswith(kind) and body
        code, _, body = await fetch(router, "/status/secrets.txt")
        assert code == 404 and b"status.css" in body


async def test_a_window_outside_the_books_is_refused_with_what_to_ask_instead():
    async with served(FakeReplica("priv-1", "private", scripts.answers)) as (router, _):
        code, _, body = await fetch(router, "/status.json?minutes=600")
        assert code == 422 and b"minutes" in body
        assert (await status(router, "?minutes=1"))["window"]["minutes"] == 1


async def test_a_request_every_replica_refused_as_full_ends_in_the_last_failures():
    full = [FakeReplica(f"priv-{i}", "private", scripts.is_full) for i in range(3)]
    async with served(*full) as (router, stub):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            [r async for r in stub.Generate(build_request("hello", priority="interactive"), timeout=5)]
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        document = await status(router)
        assert document["success"]["failed"] == 1 and document["success"]["rate"] == 0.0
        [failure] = document["last_failures"]  # the request's end, not each full replica's answer
        assert failure["outcome"] == "resource_exhausted" and failure["tier"] == "none"
