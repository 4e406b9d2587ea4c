"""The WAN emulation proxy on loopback, against a tiny echo server."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from hybrid.bench.processes import ServerProcess
from hybrid.bench.wan import DelayProxy, DelayProxyGroup, WanConfig, WanRoute, split_address


async def echo_server():
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    return server, f"{host}:{port}"


async def round_trip(address: str, payload: bytes) -> tuple[bytes, float]:
    host, port = split_address(address)
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(payload)
    await writer.drain()
    received = await reader.readexactly(len(payload))
    elapsed = time.monotonic() - started
    writer.close()
    return received, elapsed


@pytest.fixture
async def echo():
    server, address = await echo_server()
    yield address
    server.close()
    await server.wait_closed()


async def test_a_round_trip_takes_at_least_the_configured_rtt(echo):
    proxy = DelayProxy(echo, rtt_ms=40)
    await proxy.start()
    try:
        assert proxy.address.startswith("127.0.0.1:")
        _, direct = await round_trip(echo, b"ping")
        received, through = await round_trip(proxy.address, b"ping")
        assert received == b"ping"
        assert through >= 0.040
        assert through < 0.040 + direct + 0.5  # delay, not a stall
        # Each further exchange on the same connection pays the round trip again.
        host, port = split_address(proxy.address)
        reader, writer = await asyncio.open_connection(host, port)
        for _ in range(3):
            started = time.monotonic()
            writer.write(b"x")
            await writer.drain()
            assert await reader.readexactly(1) == b"x"
            assert time.monotonic() - started >= 0.040
        writer.close()
    finally:
        await proxy.stop()


async def test_bytes_arrive_intact_and_in_order(echo):
    proxy = DelayProxy(echo, rtt_ms=10)
    await proxy.start()
    try:
        payload = os.urandom(3 * 1024 * 1024 + 17)
        received, _ = await round_trip(proxy.address, payload)
        assert received == payload
        # Many small writes in quick succession come out as one stream, in order.
        host, port = split_address(proxy.address)
        reader, writer = await asyncio.open_connection(host, port)
        pieces = [f"{i:05d};".encode() for i in range(2000)]
        for piece in pieces:
            writer.write(piece)
        await writer.drain()
        assert await reader.readexactly(sum(map(len, pieces))) == b"".join(pieces)
        writer.close()
        assert proxy.bytes_up >= len(payload) and proxy.bytes_down >= len(payload)
    finally:
        await proxy.stop()


async def test_many_concurrent_connections_are_delayed_together_not_one_after_another(echo):
    proxy = DelayProxy(echo, rtt_ms=50)
    await proxy.start()
    try:
        started = time.monotonic()
        results = await asyncio.gather(*(round_trip(proxy.address, f"conn {i}".encode() * 100) for i in range(100)))
        elapsed = time.monotonic() - started
        for i, (received, took) in enumerate(results):
            assert received == f"conn {i}".encode() * 100
            assert took >= 0.050
        assert elapsed < 2.0  # 100 x 50 ms one after another would be 5 s
        assert proxy.connections_total == 100
    finally:
        await proxy.stop()


async def test_a_target_that_is_down_closes_the_connection():
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead = f"127.0.0.1:{probe.sockets[0].getsockname()[1]}"
    probe.close()
    await probe.wait_closed()
    proxy = DelayProxy(dead, rtt_ms=5)
    await proxy.start()
    try:
        host, port = split_address(proxy.address)
        reader, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await proxy.stop()


def test_a_proxy_group_serves_from_a_process_of_its_own():
    async def serve_echo():
        return await echo_server()

    loop = asyncio.new_event_loop()
    try:
        server, address = loop.run_until_complete(serve_echo())
        routes = [WanRoute(target=address, rtt_ms=20, name="a"), WanRoute(target=address, rtt_ms=60, name="b")]
        group = ServerProcess(DelayProxyGroup, WanConfig(routes=routes), "wan")
        try:
            first, second = group.address
            assert first != second
            for through, rtt_s in ((first, 0.020), (second, 0.060)):
                received, took = loop.run_until_complete(round_trip(through, b"hello"))
                assert received == b"hello" and took >= rtt_s
        finally:
            group.stop()
        assert group.pid is not None and not _alive(group.pid)
        server.close()
        loop.run_until_complete(asyncio.sleep(0.2))  # the echo handlers see their connections close
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_server_that_cannot_start_says_why():
    with pytest.raises(RuntimeError, match="wan failed to start: .*not HOST:PORT"):
        ServerProcess(DelayProxyGroup, WanConfig(routes=[WanRoute(target="nowhere", rtt_ms=1)]), "wan")


def test_a_negative_rtt_is_refused():
    with pytest.raises(ValueError, match="0 or more"):
        DelayProxy("127.0.0.1:1", rtt_ms=-1)
