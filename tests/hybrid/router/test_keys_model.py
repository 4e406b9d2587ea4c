"""API keys in front of the real model: the usage a key is charged is what the answers carried, token for token."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from hybrid.client import HybridClient
from hybrid.security.keys import KeyLimits, add_key


@pytest.fixture(scope="module")
def keyed_edge_router(edge_agent, tmp_path_factory):
    from hybrid.router.server import BackgroundRouter, RouterConfig

    keys = tmp_path_factory.mktemp("keys") / "keys.yaml"
    user = add_key(keys, "user", ("interactive", "batch"), KeyLimits(tokens_per_min=100_000, streams=4))
    admin = add_key(keys, "ops", admin=True)
    router = BackgroundRouter(
        RouterConfig(
            port=0, discovery=edge_agent.agent.config.discovery, http_port=0, poll_interval_s=0.2, keys=str(keys)
        )
    )
    yield router, user, admin
    router.stop()


def test_usage_per_key_is_what_the_models_answers_carried(keyed_edge_router):
    router, user, admin = keyed_edge_router
    prompt_tokens = completion_tokens = 0
    with openai.OpenAI(base_url=f"http://{router.http_address}/v1", api_key=user, max_retries=0, timeout=120) as client:
        for question in ("Name a colour.", "What is two plus two?"):
            answer = client.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": question}], max_tokens=6
            )
            prompt_tokens += answer.usage.prompt_tokens
            completion_tokens += answer.usage.completion_tokens
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(
                model="smollm2-135m",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=2,
                extra_headers={"x-hybrid-priority": "realtime"},
            )
    with HybridClient(router.address, api_key=user) as client:
        usage = client.complete(prompt="The sea is", max_new_tokens=5).usage
        prompt_tokens += usage.prompt_tokens
        completion_tokens += usage.completion_tokens
    request = urllib.request.Request(
        f"http://{router.http_address}/v1/usage", headers={"authorization": f"Bearer {admin}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        rows = {row["key"]: row for row in json.loads(answer.read())["keys"]}
    assert prompt_tokens > 10 and completion_tokens > 0
    assert rows["user"]["requests"] == 3 and rows["user"]["refused"] == 1
    assert (rows["user"]["prompt_tokens"], rows["user"]["completion_tokens"]) == (prompt_tokens, completion_tokens)
