"""Fuzzing the router over gRPC: any GenerateRequest, any bytes, any authorization value. The router answers or
refuses with a status the caller can act on, never INTERNAL or UNKNOWN, and keeps serving."""

from __future__ import annotations

import os
import string

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid import wire
from hybrid.client import build_request
from hybrid.router.server import Router, RouterConfig
from hybrid.security.keys import add_key
from hybrid.serving.background import BackgroundLoop
from tests.fuzzing import SERVER_FAULTS, generate_requests, raw_requests, send_raw
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource

pytestmark = pytest.mark.timeout(60)

# Examples per test; docs/fuzzing.md records a run of many more (HYBRID_FUZZ_EXAMPLES).
FUZZ = settings(
    max_examples=int(os.environ.get("HYBRID_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


class FuzzedRouter:
    """A router with keys on, in front of two scripted replicas, on its own loop thread."""

    def __init__(self, folder):
        keys = folder / "keys.yaml"
        self.key = add_key(keys, "fuzz")
        self.loop = BackgroundLoop("fuzzed-router")
        self.replicas, self.router = self.loop.call(self._start(str(keys)))
        self.channel = grpc.insecure_channel(self.router.address)

    async def _start(self, keys: str):
        replicas = [FakeReplica("edge-1", "edge", scripts.answers), FakeReplica("cloud-1", "private", scripts.answers)]
        for replica in replicas:
            await replica.shell.start()
        # Load polls keep the replicas heard: a loaded machine must not make them look frozen.
        config = RouterConfig(port=0, discovery="memory", poll_interval_s=0.25, keys=keys)
        router = Router(config, source=MemorySource([r.record for r in replicas]))
        await router.start()
        return replicas, router

    async def _stop(self):
        await self.router.stop()
        for replica in self.replicas:
            await replica.shell.stop(0)

    def close(self) -> None:
        self.channel.close()
        self.loop.call(self._stop())
        self.loop.close()

    def still_answers(self) -> bool:
        raw = build_request("hello", max_new_tokens=2).SerializeToString()
        return send_raw(self.channel, raw, wire.call_metadata(api_key=self.key)) == grpc.StatusCode.OK


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    router = FuzzedRouter(tmp_path_factory.mktemp("fuzz"))
    yield router
    router.close()


_header_values = st.text(alphabet=string.printable.strip() + " ", max_size=60)


def test_any_generate_request_is_answered_or_refused_never_a_server_fault(fuzzed):
    codes: set[grpc.StatusCode] = set()

    @FUZZ
    @given(message=generate_requests)
    def check(message):
        code = send_raw(fuzzed.channel, message.SerializeToString(), wire.call_metadata(api_key=fuzzed.key))
        codes.add(code)
        assert code not in SERVER_FAULTS, message

    check()
    assert fuzzed.still_answers()
    # The strategy reaches both sides: requests served and requests refused as invalid.
    assert {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT} <= codes


def test_any_bytes_are_refused_or_answered_never_a_server_fault(fuzzed):
    @FUZZ
    @given(raw=raw_requests())
    def check(raw):
        assert send_raw(fuzzed.channel, raw, wire.call_metadata(api_key=fuzzed.key)) not in SERVER_FAULTS, raw

    check()
    assert fuzzed.still_answers()


def test_any_authorization_value_is_unauthenticated(fuzzed):
    raw = build_request("hello", max_new_tokens=2).SerializeToString()

    @FUZZ
    @given(value=_header_values)
    def check(value):
        code = send_raw(fuzzed.channel, raw, (("authorization", value),))
        assert code == grpc.StatusCode.UNAUTHENTICATED, value

    check()
    assert fuzzed.still_answers()
