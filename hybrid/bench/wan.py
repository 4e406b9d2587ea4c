"""WAN emulation on loopback: a TCP proxy that delays every byte by half a round trip each way.

``tc netem`` is not in every kernel (nor allowed in every sandbox), so the bench puts a ``DelayProxy``
in front of each tier instead. Every chunk read from one side is forwarded to the other at its
arrival time plus ``rtt_ms / 2``. The delay is the same for every chunk, so forwarding in arrival
order keeps the byte stream in order, and reading goes on while earlier chunks wait, so the
proxy adds latency, not a bandwidth limit. A request/response exchange therefore takes at least
one ``rtt_ms`` more than it would directly.

    proxy = DelayProxy("127.0.0.1:50061", rtt_ms=40)
    await proxy.start()          # listens on 127.0.0.1, a free port
    ... connect to proxy.address ...
    await proxy.stop()

``DelayProxyGroup`` runs one per ``WanRoute`` on one event loop: the bench starts it in a process
of its own (``hybrid.bench.processes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydantic import BaseModel, Field

from hybrid import constants

log = logging.getLogger("hybrid.bench.wan")

_CHUNK = 64 * 1024
_EOF = b""


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class DelayProxy:
    """Listens on ``host:port`` (127.0.0.1, a free port by default) and forwards to ``target`` with delay."""

    def __init__(self, target: str, rtt_ms: float, host: str = constants.DEFAULT_HOST, port: int = 0, name: str = ""):
        if rtt_ms < 0:
            raise ValueError(f"rtt_ms is {rtt_ms}: use 0 or more milliseconds")
        self.target = target
        self._target_host, self._target_port = split_address(target)  # a typo fails here, not per connection
        self.rtt_ms = rtt_ms
        self.one_way_s = rtt_ms / 2000.0
        self.name = name or f"wan-{target}"
        self._host, self._port = host, port
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()
        self.address = ""
        # Counters, for tests and for the bench's own report.
        self.connections_total = 0
        self.bytes_up = 0
        self.bytes_down = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"
        log.info("WAN proxy %s ready on %s -> %s (RTT %.0f ms)", self.name, self.address, self.target, self.rtt_ms)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        self.connections_total += 1
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(self._target_host, self._target_port)
            except OSError as error:
                log.debug("WAN proxy %s: cannot reach %s (%s)", self.name, self.target, error)
                return
            try:
                await asyncio.gather(
                    self._pump(client_reader, upstream_writer, up=True),
                    self._pump(upstream_reader, client_writer, up=False),
                )
            finally:
                upstream_writer.close()
        except asyncio.CancelledError:
            pass
        finally:
            client_writer.close()
            self._connections.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool) -> None:
        """Reads chunks as they come and hands each to a sender that forwards it at arrival + one-way delay."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, writer))
        try:
            while True:
                try:
                    data = await reader.read(_CHUNK)
                except (ConnectionError, OSError):
                    data = _EOF
                queue.put_nowait((loop.time() + self.one_way_s, data))
                if not data:
                    break
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
            await sender
        finally:
            sender.cancel()

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                return


class WanRoute(BaseModel):
    """One emulated WAN link: where it leads and its round trip."""

    target: str = Field(description="HOST:PORT the proxy forwards to.")
    rtt_ms: float = Field(ge=0, description="Round trip the proxy adds, ms.")
    name: str = Field(default="", description="For logs: what sits behind it.")


class WanConfig(BaseModel):
    routes: list[WanRoute] = Field(description="One delay proxy per route, each on a free loopback port.")


class DelayProxyGroup:
    """Several delay proxies on one event loop; ``address`` lists theirs in the routes' order."""

    def __init__(self, config: WanConfig):
        self.proxies = [DelayProxy(r.target, r.rtt_ms, name=r.name) for r in config.routes]
        self.address: list[str] = []

    async def start(self) -> None:
        for proxy in self.proxies:
            await proxy.start()
        self.address = [proxy.address for proxy in self.proxies]

    async def stop(self) -> None:
        for proxy in self.proxies:
            await proxy.stop()
