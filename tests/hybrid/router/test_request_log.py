"""The request log: one JSON line per request, through the router's call hooks, sampled, off by default."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager

import grpc
import pytest

from hybrid.client import build_request
from hybrid.router.request_log import RequestLog, open_log
from hybrid.router.server import Router, RouterConfig
from hybrid.v1 import inference_pb2_grpc as pb_grpc
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource

pytestmark = pytest.mark.timeout(10)


@asynccontextmanager
async def routed(*replicas: FakeReplica, **settings):
    for replica in replicas:
        await replica.shell.start()
    config = RouterConfig(port=0, discovery="memory", poll_interval_s=60, drain_grace_s=0, **settings)
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


async def ask(stub, request_id: str, **params):
    params.setdefault("priority", "interactive")  # private first, then public
    return [r async for r in stub.Generate(build_request("hello", request_id=request_id, **params), timeout=5)]


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_an_answered_request_is_one_line_with_where_it_went_why_and_what_came_of_it(tmp_path):
    log = tmp_path / "requests.jsonl"
    async with routed(FakeReplica("priv-1", "private", scripts.answers), request_log=str(log)) as (_, stub):
        await ask(stub, "r-1")
    [line] = lines(log)
    assert {k: line[k] for k in ("request_id", "class", "tier", "replica", "reason", "outcome", "tokens")} == {
        "request_id": "r-1",
        "class": "cold INTERACTIVE",
        "tier": "private",
        "replica": "priv-1",
        "reason": "first choice",
        "outcome": "ok",
        "tokens": 3,
    }
    assert line["key"] is None and line["tried"] == []
    assert 0 < line["ttft_ms"] <= line["latency_ms"] < 5000
    assert line["time"].endswith("+00:00")


async def test_a_request_retried_elsewhere_is_one_line_naming_the_replica_that_failed(tmp_path):
    log = tmp_path / "requests.jsonl"
    bad, good = FakeReplica("priv-1", "private", scripts.fails_at_once), FakeReplica("pub-1", "public", scripts.answers)
    async with routed(bad, good, request_log=str(log)) as (_, stub):
        await ask(stub, "r-2")
    [line] = lines(log)
    assert (line["replica"], line["outcome"], line["tried"]) == ("pub-1", "ok", ["priv-1: unavailable"])
    assert line["reason"] == "spillover from private, retry 1"


async def test_a_request_no_tier_has_room_for_is_one_refused_line(tmp_path):
    log = tmp_path / "requests.jsonl"
    full = [FakeReplica("priv-1", "private", scripts.is_full), FakeReplica("pub-1", "public", scripts.is_full)]
    async with routed(*full, request_log=str(log)) as (_, stub):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ask(stub, "r-3")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    [line] = lines(log)
    assert (line["request_id"], line["outcome"], line["tier"], line["replica"]) == ("r-3", "refused", None, None)
    assert sorted(line["tried"]) == ["priv-1: resource_exhausted", "pub-1: resource_exhausted"]
    assert line["retry_after_ms"] > 0


async def test_a_failure_passed_on_to_the_caller_is_logged_with_its_status(tmp_path):
    log = tmp_path / "requests.jsonl"
    async with routed(FakeReplica("priv-1", "private", scripts.stalls_after_one_chunk), request_log=str(log)) as (
        _,
        stub,
    ):
        with pytest.raises(grpc.aio.AioRpcError):
            [r async for r in stub.Generate(build_request("hello", request_id="r-4"), timeout=0.3)]
    [line] = lines(log)
    assert line["request_id"] == "r-4" and line["outcome"] in ("cancelled", "deadline_exceeded")
    assert line["tokens"] == 1 and line["ttft_ms"] is not None


async def test_the_log_is_off_by_default_and_writes_nothing(tmp_path, capsys):
    async with routed(FakeReplica("priv-1", "private", scripts.answers)) as (router, stub):
        await ask(stub, "r-5")
        assert router.dataplane.request_log is None
        assert not any(isinstance(hook, RequestLog) for hook in router.dataplane.hooks.hooks)
    assert capsys.readouterr().err == ""


async def test_a_sample_of_0_writes_no_line_and_a_sample_keeps_that_share(tmp_path):
    log = tmp_path / "requests.jsonl"
    async with routed(
        FakeReplica("priv-1", "private", scripts.answers), request_log=str(log), request_log_sample=0.0
    ) as (_, stub):
        for index in range(5):
            await ask(stub, f"r-{index}")
    assert lines(log) == []
    draws = iter([0.1, 0.6, 0.2, 0.9])
    kept = RequestLog(logging.getLogger("test-sample"), sample=0.5, chance=lambda: next(draws))
    assert [kept._kept() for _ in range(4)] == [True, False, True, False]


def test_bad_settings_say_what_to_change(tmp_path):
    with pytest.raises(ValueError, match="between 0 and 1"):
        RequestLog(logging.getLogger("test-bad"), sample=2)
    with pytest.raises(ValueError, match="folder .* does not exist"):
        open_log(str(tmp_path / "missing" / "requests.jsonl"))
    with pytest.raises(ValueError, match="request_log_sample"):
        RouterConfig(discovery="memory", request_log="-", request_log_sample=1.5)


def test_the_log_goes_to_stderr_with_a_dash_and_not_to_the_root_logger(capsys, caplog):
    logger = open_log("-")
    logger.info('{"request_id":"x"}')
    assert capsys.readouterr().err == '{"request_id":"x"}\n'
    assert caplog.records == []


def test_two_logs_in_one_process_keep_their_own_files(tmp_path):
    first, second = open_log(str(tmp_path / "a.jsonl")), open_log(str(tmp_path / "b.jsonl"))
    first.info("one")
    second.info("two")
    RequestLog(second).close()
    first.info("three")
    for handler in first.handlers:
        handler.flush()
    assert (tmp_path / "a.jsonl").read_text() == "one\nthree\n"
    assert (tmp_path / "b.jsonl").read_text() == "two\n"
