"""The key path's pieces alone, on a clock the test moves: token buckets, limits read again, cost per key; and
the warning for a router open to anyone."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from hybrid.discovery import ReplicaRecord
from hybrid.router.keyguard import Allowance, Grant, TokenBucket
from hybrid.router.ledger import OK, Call
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.server import is_loopback
from hybrid.router.usage import UsageMeter
from hybrid.security.keys import KeyEntry, KeyLimits


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lends_its_burst_then_refills_at_its_rate():
    bucket = TokenBucket(rate_per_s=2.0, capacity=3, now=0.0)
    for _ in range(3):
        assert bucket.wait_s(1, 0.0) == 0
        bucket.spend(1, 0.0)
    assert bucket.wait_s(1, 0.0) == pytest.approx(0.5)
    assert bucket.wait_s(1, 0.5) == 0
    bucket.spend(10, 0.5)  # overdrawn: nothing until it is paid back
    assert bucket.wait_s(1, 0.5) == pytest.approx(5.0)
    assert bucket.wait_s(1, 100.0) == 0 and bucket.level == 3  # never above its capacity


def replica(replica_id: str, cost_per_hour: float) -> ReplicaState:
    record = ReplicaRecord(
        id=replica_id,
        address="127.0.0.1",
        port=1,
        tier="edge",
        model="m",
        precision="int8",
        region="test",
        capacity=4,
        cost_per_hour=cost_per_hour,
    )
    return ReplicaState(record)


def answered(state: ReplicaState, name: str, prompt: int, completion: int, clock: Clock) -> Call:
    entry = KeyEntry(name=name, sha256="0" * 64)
    grant = Grant(entry, Allowance.of(KeyLimits(), clock()), prompt_estimate=1, clock=clock)
    call = Call(state, clock(), None, 16, grant=grant)
    call.streamed(completion, clock())
    call.reported_usage = (prompt, completion)
    return call


def test_each_replicas_hour_is_split_over_the_keys_by_the_tokens_they_got_from_it():
    clock = Clock()
    meter = UsageMeter(CollectorRegistry(), clock=clock)
    cheap, dear = replica("edge-1", 3.6), replica("cloud-1", 36.0)
    for call in (
        answered(cheap, "alice", 5, 30, clock),
        answered(cheap, "bob", 5, 10, clock),
        answered(dear, "bob", 5, 20, clock),
    ):
        meter.ended(call, OK, clock())
    clock.now += 10  # 10 s of both replicas: 0.01 $ of the cheap one, 0.1 $ of the dear one
    usage = meter.snapshot()
    assert usage["alice"].cost_dollars == pytest.approx(0.01 * 30 / 40)
    assert usage["bob"].cost_dollars == pytest.approx(0.01 * 10 / 40 + 0.1)
    assert (usage["bob"].requests, usage["bob"].prompt_tokens, usage["bob"].completion_tokens) == (2, 10, 30)
    clock.now += 3600  # an hour in which nobody was served is idle: charged to no key
    assert meter.snapshot()["alice"].cost_dollars == pytest.approx(0.0075)


def test_one_worker_of_several_charges_its_share_of_each_replica():
    clock = Clock()
    meter = UsageMeter(CollectorRegistry(), replica_share=0.25, clock=clock)
    meter.ended(answered(replica("edge-1", 3.6), "alice", 1, 4, clock), OK, clock())
    clock.now += 10
    assert meter.snapshot()["alice"].cost_dollars == pytest.approx(0.01 / 4)


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True), ("0.0.0.0", False), ("10.0.0.2", False)],
)
def test_which_hosts_are_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_new_limits_apply_at_once_and_the_streams_in_flight_still_free_their_slots():
    from hybrid.client import build_request
    from hybrid.protocol import request_from_proto
    from hybrid.router.keyguard import KeyGuard, KeyLimitError

    clock = Clock()
    guard = KeyGuard(store=None, clock=clock)
    request = request_from_proto(build_request("hello", max_new_tokens=4))
    before = KeyEntry(name="alice", sha256="a" * 64, limits=KeyLimits(streams=1))
    held = guard.admit(before, request)
    with pytest.raises(KeyLimitError):
        guard.admit(before, request)
    after = KeyEntry(name="alice", sha256="a" * 64, limits=KeyLimits(streams=2))  # the file read again
    second = guard.admit(after, request)
    with pytest.raises(KeyLimitError):
        guard.admit(after, request)
    held.release()
    second.release()
    assert guard.streams_open("alice") == 0
    guard.admit(after, request).release()


def test_a_router_without_keys_beyond_loopback_is_warned_about():
    from hybrid.router.server import RouterConfig, exposure_warning

    open_router = RouterConfig(host="0.0.0.0", discovery="static:x.yaml")
    assert "without API keys" in exposure_warning(open_router) and "--keys FILE" in exposure_warning(open_router)
    assert exposure_warning(open_router.model_copy(update={"keys": "keys.yaml"})) is None
    assert exposure_warning(open_router.model_copy(update={"host": "127.0.0.1"})) is None
