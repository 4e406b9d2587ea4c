"""The router over mutual TLS on loopback: its callers, its replicas, its HTTP front, and rotation on each."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from contextlib import asynccontextmanager

import grpc
import pytest

from hybrid.client import AsyncHybridClient, RequestFailed
from hybrid.router.server import Router, RouterConfig
from hybrid.security.tls import TlsConfigError, TlsSettings
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler
from hybrid.v1 import inference_pb2 as pb
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource
from tests.hybrid.security.conftest import der, presented_certificate, rotate

pytestmark = pytest.mark.timeout(30)


class TlsReplica(FakeReplica):
    """A scripted replica serving mutual TLS with ``tls`` (plaintext on loopback when it names no certificate)."""

    def __init__(self, replica_id: str, tier: str, script, tls: TlsSettings):
        super().__init__(replica_id, tier, script)
        self.shell = ServerShell("127.0.0.1", 0, [INFERENCE_SERVICE], tls=tls)
        self.shell.server.add_generic_rpc_handlers((inference_handler(self.generate, self.get_load),))
        self.record = self.record.model_copy(update={"port": self.shell.port})


async def slow_answer(replica: FakeReplica, message: pb.GenerateRequest):
    for index in range(30):
        await asyncio.sleep(0.02)
        yield scripts.chunk(message, [index], last=index == 29)


def get(url: str, context: ssl.SSLContext | None) -> tuple[int, dict]:
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return response.status, json.loads(response.read())


@asynccontextmanager
async def routed(tls: TlsSettings, *replicas: FakeReplica, **config):
    for replica in replicas:
        await replica.shell.start()
    router = Router(
        RouterConfig(port=0, discovery="memory", poll_interval_s=60, drain_grace_s=5, tls=tls, **config),
        source=MemorySource([r.record for r in replicas]),
    )
    await router.start()
    try:
        yield router
    finally:
        await router.stop()
        for replica in replicas:
            await replica.shell.stop(0)


async def test_the_router_serves_mtls_callers_and_reaches_replicas_over_mtls(pki):
    replica = TlsReplica("pub-1", "public", scripts.answers, pki.server)
    async with routed(pki.server, replica) as router:
        async with AsyncHybridClient(router.address, timeout_s=5, tls=pki.client) as client:
            answer = await client.complete(prompt="hi")
        async with AsyncHybridClient(router.address, timeout_s=1, tls=TlsSettings()) as plaintext:
            with pytest.raises(RequestFailed) as refused:
                await plaintext.complete(prompt="hi")
    assert answer.token_ids == [1, 2, 3] and replica.calls == 1
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE and replica.calls == 1


async def test_a_replica_with_a_certificate_of_another_ca_is_never_routed_to(pki, stranger_pki):
    # INTERACTIVE tries the private tier first: there sits the stranger, listed by discovery all the same.
    stranger = TlsReplica("priv-1", "private", scripts.answers, stranger_pki.server)
    trusted = TlsReplica("pub-1", "public", scripts.answers, pki.server)
    async with routed(pki.server, stranger, trusted) as router:
        async with AsyncHybridClient(router.address, timeout_s=5, tls=pki.client) as client:
            answers = [await client.complete(prompt="hi", priority="interactive") for _ in range(3)]
    assert all(a.token_ids == [1, 2, 3] for a in answers)
    assert stranger.calls == 0 and trusted.calls == 3


async def test_a_plaintext_tier_is_reached_without_tls_and_only_it(pki):
    plain = TlsReplica("priv-1", "private", scripts.answers, TlsSettings())
    async with routed(pki.server, plain, plaintext_tiers=["private"]) as router:
        async with AsyncHybridClient(router.address, timeout_s=5, tls=pki.client) as client:
            answer = await client.complete(prompt="hi", priority="interactive")
    assert answer.token_ids == [1, 2, 3] and plain.calls == 1


async def test_the_router_takes_its_rotated_certificate_to_replicas_without_cutting_a_running_answer(pki):
    replica = TlsReplica("pub-1", "public", slow_answer, pki.server)
    async with routed(pki.server, replica) as router:
        old_channel = router.view._channels["pub-1"]
        async with AsyncHybridClient(router.address, timeout_s=10, tls=pki.client) as client:
            stream = client.stream(prompt="long")
            first = await anext(stream)
            rotate(pki)  # the router's own pair: what it serves with and presents to replicas
            for _ in range(100):  # the view's tick (0.1 s) notices the new files and reopens the channel
                if router.view._channels["pub-1"] is not old_channel:
                    break
                await asyncio.sleep(0.02)
            assert router.view._channels["pub-1"] is not old_channel
            rest = [chunk async for chunk in stream]
            again = await client.complete(prompt="again")
        # The new pair reaches the router's callers too.
        served = await asyncio.to_thread(presented_certificate, router.address, pki.ca, pki.client)
    assert [first.token_ids[0], *(c.token_ids[0] for c in rest)] == list(range(30))
    assert again.finish_reason == "STOP" and replica.calls == 2
    assert served == der(pki.folder / "server.pem")


async def test_the_http_front_serves_https_with_the_grpc_pair_and_takes_a_rotated_one(pki):
    replica = TlsReplica("pub-1", "public", scripts.answers, pki.server)
    async with routed(pki.server, replica, http_port=0) as router:
        url = router.http_url
        assert url.startswith("https://")
        verify = ssl.create_default_context(cafile=str(pki.ca))
        status, models = await asyncio.to_thread(get, f"{url}/v1/models", verify)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(get, url.replace("https://", "http://") + "/v1/models", None)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.to_thread(get, f"{url}/v1/models", ssl.create_default_context())
        rotate(pki)
        served = await asyncio.to_thread(presented_certificate, router.http_address, pki.ca, None, "http/1.1")
    assert status == 200 and models["data"][0]["id"] == "smollm2-135m"
    assert served == der(pki.folder / "server.pem")


def test_a_router_without_tls_refuses_every_interface_and_says_what_to_change():
    with pytest.raises(TlsConfigError, match="--tls-cert") as refusal:
        RouterConfig(host="0.0.0.0", discovery="memory", http_port=0).check_exposure()
    assert "--plaintext" in str(refusal.value)
    RouterConfig(host="0.0.0.0", discovery="memory", http_port=0, tls=TlsSettings(plaintext=True)).check_exposure()


def test_the_http_front_has_its_own_pair_or_the_grpc_one(pki):
    config = RouterConfig(discovery="memory", tls=pki.server)
    assert config.http_tls() == (pki.server.cert, pki.server.key)
    own = RouterConfig(discovery="memory", tls=pki.server, http_tls_cert=pki.client.cert, http_tls_key=pki.client.key)
    assert own.http_tls() == (pki.client.cert, pki.client.key)
    with pytest.raises(ValueError, match="go together"):
        RouterConfig(discovery="memory", http_tls_cert=pki.client.cert)
