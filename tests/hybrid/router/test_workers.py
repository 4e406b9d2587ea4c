"""`hybrid router serve --workers N`: real worker processes on shared ports in front of an instant replica."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from hybrid import wire
from hybrid.client import build_request
from hybrid.discovery import ReplicaRecord, registry_from_spec
from hybrid.protocol import Chunk, FinishReason, ServedBy, Tier
from hybrid.security.keys import add_key
from hybrid.serving.background import BackgroundLoop
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler
from hybrid.serving.ports import free_port
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import inference_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[3]


class InstantReplica:
    """A hybrid.v1.Inference server that answers every request at once with one final chunk."""

    def __init__(self, port: int):
        self.shell = ServerShell("127.0.0.1", port, [INFERENCE_SERVICE])
        self.shell.server.add_generic_rpc_handlers((inference_handler(self.generate, self.get_load),))
        self.address = self.shell.address

    async def generate(self, message: pb.GenerateRequest, context):
        served_by = ServedBy(Tier.EDGE, "instant", "local", "none")
        yield Chunk(message.request_id, "ok", [1], served_by, FinishReason.STOP, 1, 1).to_proto()

    async def get_load(self, message, context) -> pb.LoadReport:
        return pb.LoadReport(replica_id="instant", capacity=1024)

    async def start(self) -> None:
        await self.shell.start()

    async def stop(self) -> None:
        await self.shell.stop(0)


@pytest.fixture(scope="module")
def discovery(tmp_path_factory):
    loop = BackgroundLoop("instant-replica")
    replica = loop.start_server(InstantReplica, 0)
    spec = f"static:{tmp_path_factory.mktemp('workers') / 'discovery.yaml'}"
    record = ReplicaRecord(
        id="instant",
        address="127.0.0.1",
        port=replica.shell.port,
        tier="edge",
        model="instant",
        precision="none",
        region="local",
        capacity=1024,
    )
    registry_from_spec(spec).register(record)
    yield spec
    loop.call(replica.stop())
    loop.close()


class RouterProcesses:
    """`hybrid router serve --workers N` as a child process, its output collected line by line."""

    def __init__(self, discovery: str, workers: int = 2, extra: tuple[str, ...] = ()):
        self.port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        command = [sys.executable, "-m", "hybrid.cli", "router", "serve", "--workers", str(workers)]
        command += ["--discovery", discovery]
        command += ["--port", str(self.port), "--http-port", str(self.http_port)]
        command += ["--metrics-port", str(self.metrics_port), "--drain-grace-s", "1", *extra]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        if workers == 1:
            self.wait_for(r"router ready on ")
            self.worker_pids = []
        else:
            ready = self.wait_for(r"router ready on \S+ with 2 workers \(pids (\d+), (\d+)\)")
            self.worker_pids = [int(pid) for pid in ready.groups()]

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout_s: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None and not any(re.search(pattern, line) for line in self.lines):
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.lines)}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as answer:
            return answer.read().decode()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill_all(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def router(discovery):
    processes = RouterProcesses(discovery)
    yield processes
    processes.kill_all()


def send(port: int, requests: int, channels: int, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """``requests`` over ``channels`` fresh connections (no shared subchannel); the text of each answer."""

    async def run() -> list[str]:
        options = [("grpc.use_local_subchannel_pool", 1)]
        opened = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) for _ in range(channels)]
        stubs = [pb_grpc.InferenceStub(channel) for channel in opened]

        async def one(index: int) -> str:
            request = build_request(f"ping {index}", max_new_tokens=1, priority="realtime")
            call = stubs[index % channels].Generate(request, timeout=10, metadata=metadata)
            return "".join([chunk.text async for chunk in call])

        try:
            return await asyncio.gather(*(one(index) for index in range(requests)))
        finally:
            for channel in opened:
                await channel.close()

    return asyncio.run(run())


def worker_calls(metrics: str) -> dict[int, float]:
    """The per-worker gauge of calls seen end, by pid."""
    return {
        int(pid): float(value) for pid, value in re.findall(r'hybrid_router_worker_calls\{pid="(\d+)"\} (\S+)', metrics)
    }


def requests_counted(metrics: str) -> float:
    return sum(
        float(value) for value in re.findall(r'hybrid_router_requests_total\{[^}]*outcome="ok"[^}]*\} (\S+)', metrics)
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_two_workers_share_the_ports_and_both_serve(router):
    assert send(router.port, 200, channels=20) == ["ok"] * 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # each worker writes its own gauge once a second
        metrics = router.metrics()
        if sum(worker_calls(metrics).values()) == 200:
            break
        time.sleep(0.2)
    calls = worker_calls(metrics)
    assert set(calls) == set(router.worker_pids)
    assert all(count > 0 for count in calls.values()), calls
    assert sum(calls.values()) == 200 and requests_counted(metrics) == 200
    for _ in range(4):  # the HTTP front too, on the one port the workers share
        with urllib.request.urlopen(f"http://127.0.0.1:{router.http_port}/v1/models", timeout=5) as answer:
            assert json.loads(answer.read())["data"][0]["id"] == "instant"
    with urllib.request.urlopen(f"http://127.0.0.1:{router.http_port}/status.json", timeout=5) as answer:
        status = json.loads(answer.read())  # one worker's page, and it says so
    assert status["router"]["workers"] == len(router.worker_pids) and status["router"]["pid"] in router.worker_pids
    assert "share of calls" in status["router"]["scope"]
    assert 'hybrid_router_tier_desired_replicas{tier="edge"}' in router.metrics()  # the signal, through the parent


def test_sigterm_to_the_parent_stops_every_worker(router):
    assert router.stop() == 0
    assert not any(alive(pid) for pid in router.worker_pids)
    assert any("router stopped (2 workers)" in line for line in router.lines)


def test_a_worker_that_dies_is_restarted_and_the_exit_says_so(router):
    killed = router.worker_pids[0]
    os.kill(killed, signal.SIGKILL)
    restarted = int(router.wait_for(rf"\(pid {killed}\) exited with code -9 on its own; restarted as pid (\d+)")[1])
    router.wait_for(rf"\(pid {restarted}\) serves again")
    assert send(router.port, 40, channels=8) == ["ok"] * 40
    assert router.stop() == 1  # a worker died on its own during the run
    assert not any(alive(pid) for pid in [restarted, *router.worker_pids])


def test_workers_left_behind_by_a_parent_killed_outright_stop_on_their_own(router):
    os.kill(router.process.pid, signal.SIGKILL)
    router.process.wait()
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in router.worker_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in router.worker_pids)


def test_one_worker_is_the_router_itself_with_no_child(discovery):
    router = RouterProcesses(discovery, workers=1)
    try:
        assert send(router.port, 20, channels=2) == ["ok"] * 20
        children = Path(f"/proc/{router.process.pid}/task/{router.process.pid}/children").read_text().split()
        assert children == []
        assert router.stop() == 0
    finally:
        router.kill_all()


@pytest.mark.parametrize("flag", ["--port", "--http-port"])
def test_port_0_cannot_be_shared(discovery, flag):
    ports = {"--port": "7000", "--http-port": "7001", flag: "0"}
    command = [sys.executable, "-m", "hybrid.cli", "router", "serve", "--workers", "2", "--discovery", discovery]
    command += [item for pair in ports.items() for item in pair]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{flag} 0 cannot be shared by 2 workers" in result.stderr


def test_two_grpc_servers_bind_one_port_only_when_they_reuse_it():
    async def bind() -> None:
        first = ServerShell("127.0.0.1", 0, [INFERENCE_SERVICE], reuse_port=True)
        second = ServerShell("127.0.0.1", first.port, [INFERENCE_SERVICE], reuse_port=True)
        assert second.port == first.port
        with pytest.raises(OSError, match="could not bind"):
            ServerShell("127.0.0.1", first.port, [INFERENCE_SERVICE])

    asyncio.run(bind())


def test_usage_on_any_worker_is_the_whole_routers(discovery, tmp_path):
    keys = tmp_path / "keys.yaml"
    user = add_key(keys, "user", ("realtime", "interactive"))
    admin = add_key(keys, "ops", admin=True)
    processes = RouterProcesses(discovery, extra=("--keys", str(keys)))
    try:
        assert send(processes.port, 60, channels=12, metadata=wire.call_metadata(api_key=user)) == ["ok"] * 60
        deadline = time.monotonic() + 10
        while sum(worker_calls(processes.metrics()).values()) < 60 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(count > 0 for count in worker_calls(processes.metrics()).values()), "one worker served all"
        for _ in range(6):  # fresh connections: the kernel hands them to either worker
            request = urllib.request.Request(
                f"http://127.0.0.1:{processes.http_port}/v1/usage", headers={"authorization": f"Bearer {admin}"}
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                usage = {row["key"]: row for row in json.loads(answer.read())["keys"]}
            assert (usage["user"]["requests"], usage["user"]["completion_tokens"]) == (60, 60)
        assert user not in processes.metrics()
    finally:
        processes.kill_all()
