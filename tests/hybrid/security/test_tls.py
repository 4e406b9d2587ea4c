"""Real mutual TLS on loopback: who is served, who is refused, and rotation without dropping a stream."""

from __future__ import annotations

import datetime
import os

import grpc
import pytest

from hybrid import client as client_module
from hybrid.client import AsyncHybridClient, HybridClient, RequestFailed
from hybrid.security import certs
from hybrid.security.tls import ClientCredentials, TlsConfigError, TlsSettings
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell
from tests.hybrid.security.conftest import der, presented_certificate, rotate


def refused(address: str, tls: TlsSettings) -> RequestFailed:
    with HybridClient(address, timeout_s=1.0, tls=tls) as client, pytest.raises(RequestFailed) as failure:
        client.complete(prompt="hi", max_new_tokens=1)
    return failure.value


def test_a_client_with_a_certificate_of_the_ca_is_served(serve, pki):
    replica = serve(pki.server)
    with HybridClient(replica.address, timeout_s=5, tls=pki.client) as client:
        assert client.complete(prompt="hi", max_new_tokens=3).text == "012"


def test_a_plaintext_client_is_refused_and_told_what_to_give(serve, pki):
    replica = serve(pki.server)
    failure = refused(replica.address, TlsSettings())
    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert "this client speaks plaintext" in failure.details and "--tls-cert" in failure.details


def test_a_client_without_a_certificate_is_refused(serve, pki):
    replica = serve(pki.server)
    assert refused(replica.address, TlsSettings(ca=pki.ca)).code == grpc.StatusCode.UNAVAILABLE


def test_a_client_certificate_of_another_ca_is_refused(serve, pki, stranger_pki):
    replica = serve(pki.server)
    # It trusts the server (so only the server's check of the client can refuse), but its certificate is a stranger's.
    stranger = TlsSettings(cert=stranger_pki.client.cert, key=stranger_pki.client.key, ca=pki.ca)
    assert refused(replica.address, stranger).code == grpc.StatusCode.UNAVAILABLE


def test_a_server_of_another_ca_is_refused_by_the_client(serve, pki, stranger_pki):
    replica = serve(stranger_pki.server)
    failure = refused(replica.address, pki.client)
    assert failure.code == grpc.StatusCode.UNAVAILABLE and f"trusts {pki.ca}" in failure.details


def test_an_expired_client_certificate_is_refused(serve, pki, tmp_path):
    replica = serve(pki.server)
    authority = certs.load_authority(pki.folder)
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=60)
    cert, key = certs.make_leaf(authority, "old-client", server=False, valid_days=30, not_before=long_ago)
    certs._write_cert(tmp_path / "old.pem", cert)
    certs._write_key(tmp_path / "old.key", key)
    expired = TlsSettings(cert=tmp_path / "old.pem", key=tmp_path / "old.key", ca=pki.ca)
    assert refused(replica.address, expired).code == grpc.StatusCode.UNAVAILABLE
    # The same CA's valid certificate is served, so it was the date that refused it.
    with HybridClient(replica.address, timeout_s=5, tls=pki.client) as client:
        assert client.complete(prompt="hi", max_new_tokens=1).text == "0"


def test_a_rotated_server_certificate_reaches_new_calls_and_the_running_stream_goes_on(serve, pki):
    replica = serve(pki.server)
    before = der(pki.folder / "server.pem")
    assert presented_certificate(replica.address, pki.ca, pki.client) == before
    with HybridClient(replica.address, timeout_s=30, tls=pki.client) as running:
        stream = running.stream(prompt="long", max_new_tokens=60)
        text = next(stream).text
        rotate(pki)
        after = der(pki.folder / "server.pem")
        assert after != before
        assert presented_certificate(replica.address, pki.ca, pki.client) == after
        with HybridClient(replica.address, timeout_s=5, tls=pki.client) as fresh:
            assert fresh.complete(prompt="hi", max_new_tokens=2).text == "01"
        chunks = [text, *(chunk.text for chunk in stream)]
    assert len(chunks) == 60 and chunks[-1] == "9"
    assert replica.shell.credentials.rotations == 1


def test_a_long_lived_client_presents_its_rotated_certificate_and_its_running_stream_goes_on(serve, pki, monkeypatch):
    monkeypatch.setattr(client_module, "ROTATION_CHECK_S", 0.0)  # look at the files before every call
    replica = serve(pki.server)
    before = der(pki.folder / "client.pem")
    with HybridClient(replica.address, timeout_s=30, tls=pki.client) as client:
        stream = client.stream(prompt="long", max_new_tokens=40)
        chunks = [next(stream).text]
        rotate(pki, "client", server=False)
        after = der(pki.folder / "client.pem")
        assert client.complete(prompt="hi", max_new_tokens=2).text == "01"
        chunks += [chunk.text for chunk in stream]
        assert client.complete(prompt="hi", max_new_tokens=2).text == "01"
    assert after != before
    assert len(chunks) == 40 and chunks[-1] == "9"  # the stream begun before the rotation ended on the old pair
    assert replica.peers == [before, after, after]


async def test_an_async_client_follows_a_rotation_and_closes_every_channel_it_opened(serve, pki, monkeypatch):
    monkeypatch.setattr(client_module, "ROTATION_CHECK_S", 0.0)
    replica = serve(pki.server)
    before = der(pki.folder / "client.pem")
    client = AsyncHybridClient(replica.address, timeout_s=30, tls=pki.client)
    first_channel = client.channel
    assert (await client.complete(prompt="hi", max_new_tokens=2)).text == "01"
    rotate(pki, "client", server=False)
    assert (await client.complete(prompt="hi", max_new_tokens=2)).text == "01"
    assert client.channel is not first_channel
    await client.close()
    assert replica.peers == [before, der(pki.folder / "client.pem")]
    assert first_channel.get_state() == grpc.ChannelConnectivity.SHUTDOWN


def test_a_half_written_rotation_keeps_the_previous_pair_until_the_key_arrives(serve, pki):
    replica = serve(pki.server)
    before = der(pki.folder / "server.pem")
    fresh = certs.issue(pki.folder, "server-next", certs.LOOPBACK_SANS)
    os.replace(fresh.cert, pki.folder / "server.pem")  # the key is not there yet
    assert presented_certificate(replica.address, pki.ca, pki.client) == before
    os.replace(fresh.key, pki.folder / "server.key")
    assert presented_certificate(replica.address, pki.ca, pki.client) == der(pki.folder / "server.pem") != before


def test_client_credentials_say_once_that_their_files_changed(pki):
    credentials = ClientCredentials(pki.client)
    assert not credentials.changed()
    first = credentials.credentials
    fresh = certs.issue(pki.folder, "client-next", server=False)
    os.replace(fresh.key, pki.folder / "client.key")  # a key without its certificate is not taken
    assert not credentials.changed() and credentials.credentials is first
    os.replace(fresh.cert, pki.folder / "client.pem")
    assert credentials.changed() and credentials.credentials is not first
    assert not credentials.changed()


# --- which addresses a server may bind ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "router.example"])
def test_a_server_without_tls_refuses_to_bind_beyond_loopback(host):
    with pytest.raises(TlsConfigError, match="--plaintext") as refusal:
        ServerShell(host, 0, [INFERENCE_SERVICE])
    assert "--tls-cert" in str(refusal.value) and "127.0.0.1" in str(refusal.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_a_server_without_tls_binds_loopback(host):
    TlsSettings().check_bind(host)


async def test_plaintext_asked_for_binds_every_interface():
    shell = ServerShell("0.0.0.0", 0, [INFERENCE_SERVICE], tls=TlsSettings(plaintext=True))
    assert shell.port > 0


async def test_a_tls_server_binds_every_interface(pki):
    shell = ServerShell("0.0.0.0", 0, [INFERENCE_SERVICE], tls=pki.server)
    assert shell.port > 0 and shell.credentials is not None


# --- settings ----------------------------------------------------------------------------------------------


def test_flags_win_over_the_environment_and_fill_from_it(tmp_path):
    env = {"HYBRID_TLS_CERT": "/env/c.pem", "HYBRID_TLS_KEY": "/env/c.key", "HYBRID_TLS_CA": "/env/ca.pem"}
    settings = TlsSettings.resolve(cert="/flag/c.pem", key="/flag/c.key", env=env)
    assert (str(settings.cert), str(settings.key), str(settings.ca)) == ("/flag/c.pem", "/flag/c.key", "/env/ca.pem")
    assert TlsSettings.resolve(env={}) == TlsSettings()
    assert TlsSettings.resolve(env={"HYBRID_PLAINTEXT": "1"}).plaintext
    assert TlsSettings.resolve(plaintext=True, env=env) == TlsSettings(plaintext=True)


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"cert": "c.pem"}, "without --tls-key"),
        ({"key": "c.key"}, "without --tls-cert"),
        ({"cert": "c.pem", "key": "c.key"}, "without --tls-ca"),
        ({"ca": "ca.pem", "plaintext": True}, "drop --plaintext"),
    ],
)
def test_inconsistent_settings_say_what_to_change(fields, says):
    with pytest.raises(TlsConfigError, match=says):
        TlsSettings(**fields)


def test_missing_or_mismatched_files_say_which(pki, tmp_path):
    with pytest.raises(TlsConfigError, match="does not exist"):
        TlsSettings(cert=tmp_path / "nope.pem", key=pki.server.key, ca=pki.ca).server_credentials()
    with pytest.raises(TlsConfigError, match="is not the key of"):
        TlsSettings(cert=pki.server.cert, key=pki.client.key, ca=pki.ca).server_credentials()


# --- the command line ----------------------------------------------------------------------------------------


def test_hybrid_generate_speaks_mtls_from_flags_or_the_environment(serve, pki, capsys, monkeypatch):
    from hybrid.cli import main

    replica = serve(pki.server)
    ask = ["generate", "hi", "--raw", "--target", replica.address, "--max-new-tokens", "3", "--timeout", "5"]
    flags = ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key), "--tls-ca", str(pki.ca)]
    assert main([*ask, *flags]) == 0
    assert capsys.readouterr().out.strip() == "012"
    monkeypatch.setenv("HYBRID_TLS_CERT", str(pki.client.cert))
    monkeypatch.setenv("HYBRID_TLS_KEY", str(pki.client.key))
    monkeypatch.setenv("HYBRID_TLS_CA", str(pki.ca))
    assert main(ask) == 0
    assert capsys.readouterr().out.strip() == "012"
    assert main([*ask, "--plaintext", "--timeout", "1"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_a_server_given_only_a_ca_says_it_needs_its_own_pair_too(pki):
    with pytest.raises(TlsConfigError, match="a TLS server needs a certificate"):
        ServerShell("127.0.0.1", 0, [INFERENCE_SERVICE], tls=TlsSettings(ca=pki.ca))
