"""The baseline round-robin proxy and the open-loop load generator, on scripted model-free replicas."""

from __future__ import annotations

import grpc
import pytest
from pydantic import ValidationError

from hybrid.bench.baseline import BaselineConfig, RoundRobinProxy
from hybrid.bench.loadgen import OK, run_open_loop
from hybrid.bench.workload import Arrival
from hybrid.client import AsyncHybridClient, RequestFailed
from tests.hybrid.bench.conftest import SCRIPTED_QUEUE_MS, SCRIPTED_TTFT_MS


def arrival(index: int, at_s: float, prompt: str = "hello", priority: str = "INTERACTIVE", deadline_s: float = 5.0):
    return Arrival(at_s, f"r{index}", priority, f"k{index % 3}", prompt, 4, deadline_s, "steady")


@pytest.fixture
async def baseline(scripted_replicas):
    proxy = RoundRobinProxy(BaselineConfig(port=0, replicas=[r.record() for r in scripted_replicas]))
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_baseline_hands_requests_to_the_replicas_in_turn_whatever_their_priority(baseline, scripted_replicas):
    async with AsyncHybridClient(baseline.address, timeout_s=10) as client:
        served = []
        for priority in ("realtime", "batch", "realtime", "interactive", "realtime", "batch"):
            answer = await client.complete(prompt="hi", max_new_tokens=2, priority=priority)
            served.append(answer.served_by.replica_id)
    assert served == ["edge-a", "private-a"] * 3
    assert baseline.sent == [3, 3]


async def test_baseline_passes_a_refusal_through_without_retrying(baseline, scripted_replicas):
    async with AsyncHybridClient(baseline.address, timeout_s=10) as client:
        with pytest.raises(RequestFailed) as refused:
            await client.complete(prompt="full", max_new_tokens=2)
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.retry_after_ms == 250
    assert [len(r.requests) for r in scripted_replicas] == [1, 0]  # no second replica tried


def test_baseline_needs_replicas():
    with pytest.raises(ValidationError, match="at least one replica"):
        BaselineConfig(replicas=[])


async def test_every_arrival_ends_in_exactly_one_record(baseline):
    arrivals = [
        *(arrival(i, 0.02 * i) for i in range(10)),
        arrival(10, 0.05, "full"),
        arrival(11, 0.06, "full"),
        arrival(12, 0.07, "sleep:2", priority="REALTIME", deadline_s=0.3),
    ]
    done = []
    result = await run_open_loop(baseline.address, arrivals, name="baseline", on_done=done.append)
    records = {r.request_id: r for r in result.records}
    assert sorted(records) == sorted(a.request_id for a in arrivals) and len(result.records) == len(arrivals)
    assert len(done) == len(arrivals)
    statuses = [r.status for r in result.records]
    # Round robin: of the two "full" prompts one lands on each replica, and both are scripted to refuse.
    assert statuses.count("RESOURCE_EXHAUSTED") == 2
    assert records["r12"].status == "DEADLINE_EXCEEDED"
    assert records["r12"].latency_s == pytest.approx(0.3, abs=0.25)
    ok = [r for r in result.records if r.ok]
    assert len(ok) == 10
    for record in ok:
        assert record.status == OK
        assert record.completion_tokens == 2 and record.prompt_tokens == 3
        assert record.tier in ("edge", "private") and record.replica_id
        assert record.sent_s <= record.first_token_s <= record.end_s
        assert (record.replica_queue_ms, record.replica_ttft_ms) == (SCRIPTED_QUEUE_MS, SCRIPTED_TTFT_MS)
    for record in result.records:
        if not record.ok:
            assert record.completion_tokens == 0 and record.detail
            assert record.replica_ttft_ms is None  # no last chunk, no replica timing
    assert result.duration_s >= max(r.end_s for r in result.records)


async def test_the_generator_does_not_wait_for_answers(baseline):
    # Every answer takes 1 s; a closed loop would need 10 s for these, open loop sends all within ~0.5 s.
    arrivals = [arrival(i, 0.05 * i, "sleep:1") for i in range(10)]
    result = await run_open_loop(baseline.address, arrivals)
    assert all(r.ok for r in result.records)
    assert max(r.sent_s - r.scheduled_s for r in result.records) < 0.2
    assert max(r.sent_s for r in result.records) < 0.7
    assert result.duration_s < 3.0


async def test_a_target_that_is_down_still_gives_a_record_per_arrival():
    arrivals = [arrival(i, 0.01 * i, deadline_s=2) for i in range(5)]
    result = await run_open_loop("127.0.0.1:1", arrivals)
    assert [r.status for r in result.records] == ["UNAVAILABLE"] * 5
