"""Schemathesis against the OpenAI front's own OpenAPI schema: whatever it generates, valid or not, is answered
without a 5xx, without a hang, and as the schema says it answers. A real router with keys on, in front of a
scripted replica."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from hybrid.router.server import Router, RouterConfig
from hybrid.security.keys import add_key
from hybrid.serving.background import BackgroundLoop
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource

pytestmark = pytest.mark.timeout(60)

# Longest a single answer may take: the scripted replica answers at once, so anything near it is a hang.
ANSWER_TIMEOUT_S = 5.0
# No 5xx; and the answer is one the schema lists, with the content type and body it gives for it.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# Cases per operation and mode; docs/fuzzing.md records a run of many more (HYBRID_FUZZ_EXAMPLES).
EXAMPLES = int(os.environ.get("HYBRID_FUZZ_EXAMPLES", "15"))


class FuzzedFront:
    def __init__(self, folder):
        keys = folder / "keys.yaml"
        self.admin_key = add_key(keys, "fuzz", ("realtime", "interactive", "batch"), admin=True)
        self.loop = BackgroundLoop("fuzzed-front")
        self.replica, self.router = self.loop.call(self._start(str(keys)))
        self.base_url = f"http://{self.router.http_address}"

    async def _start(self, keys: str):
        replica = FakeReplica("edge-1", "edge", scripts.answers)
        await replica.shell.start()
        # Load polls keep the replica heard: a loaded machine must not make it look frozen.
        config = RouterConfig(port=0, http_port=0, discovery="memory", poll_interval_s=0.25, keys=keys)
        router = Router(config, source=MemorySource([replica.record]))
        await router.start()
        return replica, router

    async def _stop(self):
        await self.router.stop()
        await self.replica.shell.stop(0)

    def close(self) -> None:
        self.loop.call(self._stop())
        self.loop.close()


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    fuzzed = FuzzedFront(tmp_path_factory.mktemp("schema-fuzz"))
    yield fuzzed
    fuzzed.close()


def operations(front) -> list:
    schema = schemathesis.openapi.from_dict(front.router._http.app.openapi())
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(front: FuzzedFront, operation, mode: GenerationMode, statuses: list[int]):
    """The Hypothesis test of one operation: every case it generates is answered below 500, within the timeout."""

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        headers = {"authorization": f"Bearer {front.admin_key}"}
        response = case.call_and_validate(
            base_url=front.base_url, headers=headers, timeout=ANSWER_TIMEOUT_S, checks=CHECKS
        )
        statuses.append(response.status_code)

    return check


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_the_front_never_answers_5xx_nor_hangs(front, mode):
    statuses: dict[str, list[int]] = {}
    for operation in operations(front):
        if mode == GenerationMode.NEGATIVE and not operation.body.items:
            continue  # no body to make invalid (any string is a valid path segment)
        fuzz(front, operation, mode, statuses.setdefault(operation.label, []))()
    # What the run did, for the record (shown with -s): cases and statuses per operation.
    for label, seen in statuses.items():
        print(f"{mode.value} {label}: {len(seen)} cases, statuses {dict(sorted(Counter(seen).items()))}")
    print(f"{mode.value}: {sum(len(seen) for seen in statuses.values())} cases in all")
    assert len(statuses) == (6 if mode == GenerationMode.POSITIVE else 2), statuses
    if mode == GenerationMode.POSITIVE:
        # Valid bodies reach the replica: the fuzzing is not all refusals.
        assert 200 in statuses["POST /v1/chat/completions"] + statuses["POST /v1/completions"], statuses
