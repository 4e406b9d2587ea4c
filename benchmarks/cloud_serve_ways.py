"""The engine in one Ray Serve replica, reached through Serve's proxy, on the replica's own port and through
the router, one way after the other in one run (the ``serve`` path of ``cloud_decode.py``)."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from decode_workload import SHAPES, answer_lengths, prompts, summarize_tokens, word_tokenizer


def start_router(discovery: Path, workers: int) -> tuple[subprocess.Popen, str]:
    """`hybrid router serve` in a process of its own, on the replicas' discovery file."""
    from cloud.server import free_port

    port = free_port()
    command = [sys.executable, "-m", "hybrid.cli", "router", "serve", "--port", str(port)]
    command += ["--discovery", f"static:{discovery}"] + (["--workers", str(workers)] if workers > 1 else [])
    router = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return router, f"127.0.0.1:{port}"
        except OSError:
            if router.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the router did not start") from None
            time.sleep(0.2)


async def _complete_all(address: str, application: str | None, texts: list[str], news: list[int]) -> int:
    from hybrid.client import AsyncHybridClient

    async with AsyncHybridClient(address, timeout_s=600, application=application) as client:
        answers = await asyncio.gather(
            *(client.complete(prompt=t, max_new_tokens=n) for t, n in zip(texts, news, strict=True))
        )
        return sum(len(a.token_ids) for a in answers)


def _client_share(address: str, application: str | None, texts: list[str], news: list[int]) -> tuple[float, float, int]:
    """One client process's share of a batch: its wall-clock start and end, and the tokens it received."""
    began = time.time()
    produced = asyncio.run(_complete_all(address, application, texts, news))
    return began, time.time(), produced


class Clients:
    """The batch's requests sent from ``processes`` client processes at once, so that receiving every token
    message (one per row and decode step) in Python is not what bounds the figure; 1 sends from this process."""

    def __init__(self, processes: int):
        self.processes = processes
        self.pool = None
        if processes > 1:
            from concurrent.futures import ProcessPoolExecutor

            # spawn: this process runs Ray's driver, which must not be forked.
            self.pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))

    def run(self, address: str, application: str | None, texts: list[str], news: list[int]) -> tuple[float, int]:
        if self.pool is None:
            began = time.time()
            produced = asyncio.run(_complete_all(address, application, texts, news))
            return time.time() - began, produced
        shares = [
            self.pool.submit(_client_share, address, application, texts[i :: self.processes], news[i :: self.processes])
            for i in range(self.processes)
            if texts[i :: self.processes]
        ]
        results = [share.result() for share in shares]
        return max(end for _, end, _ in results) - min(start for start, _, _ in results), sum(r[2] for r in results)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def serve_path(
    shape: str,
    vocab: int,
    batches: list[int],
    prompt_tokens: int,
    new: int,
    repeats: int,
    max_batch: int,
    ways: list[str],
    router_workers: int,
    stagger: bool = False,
    gil_switch_interval_ms: float | None = None,
    client_processes: int = 1,
    overlap_steps: bool = True,
) -> dict:
    """The engine in one Serve replica, reached each way in ``ways``, all in this one run:
    ``proxy`` (Serve's gRPC proxy), ``direct`` (the replica's port from Serve's direct ingress), ``own``
    (the port the replica opens itself, ``replica_port``, serving from its engine without Serve's request path)
    and ``router`` (hybrid's router, which reaches the replica at the port it registered: its own where
    ``own`` is asked for, else Serve's). The client sends from ``client_processes`` processes; without
    ``overlap_steps`` the replica's decode steps wait for its host work."""
    from transformers import LlamaConfig

    from cloud.config import DeploymentSettings, ReplicaSettings
    from cloud.server import CloudTier, shutdown_serve

    folder = Path(tempfile.mkdtemp(prefix="bench-model-"))
    LlamaConfig(**SHAPES[shape], eos_token_id=0, pad_token_id=0).save_pretrained(folder)
    tokenizer = word_tokenizer(vocab)
    tokenizer.save_pretrained(folder)
    settings = ReplicaSettings(
        tier="private",
        model=str(folder),
        random_weights=True,
        max_batch_size=max_batch,
        max_wait_ms=0,
        max_queued_requests=4096,
        max_context_tokens=prompt_tokens + 2 * new + 8,
        **({} if gil_switch_interval_ms is None else {"gil_switch_interval_ms": gil_switch_interval_ms}),
        replica_port=0 if "own" in ways else None,
        overlap_decode_steps=overlap_steps,
    )
    deployment = DeploymentSettings(
        num_gpus=1 if torch.cuda.is_available() else 0,
        num_cpus=1,
        max_ongoing_requests=4 * max_batch,
        max_queued_requests=4096,
    )
    discovery = folder / "discovery.yaml"
    tier = CloudTier(settings, deployment, port=0, discovery=f"static:{discovery}", app_name="bench", num_cpus=8)
    started = time.perf_counter()
    tier.start()
    [replica] = tier.records()
    results: dict = {"deploy_seconds": time.perf_counter() - started}
    from cloud.directory import serve_grpc_targets

    [target] = serve_grpc_targets("bench").values()
    addresses = {
        "proxy": (tier.address, "bench"),
        "direct": (f"{replica.address}:{target.port}", None),
        "own": (f"{replica.address}:{replica.port}", None),
    }
    router = None
    if "router" in ways:
        router, address = start_router(discovery, router_workers)
        addresses["router"] = (address, None)

    clients = Clients(client_processes)

    def run(batch: int, address: str, application: str | None) -> tuple[float, int]:
        texts = [tokenizer.decode(row) for row in prompts(batch, prompt_tokens, vocab).tolist()]
        return clients.run(address, application, texts, answer_lengths(batch, new, stagger))

    try:
        for way in ways:
            address, application = addresses[way]
            for batch in batches:
                run(batch, address, application)  # warm-up
                times = []
                for _ in range(repeats):
                    seconds, produced = run(batch, address, application)
                    assert produced == sum(answer_lengths(batch, new, stagger)), (produced, batch)
                    times.append(seconds)
                results.setdefault(way, {})[str(batch)] = summarize_tokens(times, produced)
                print(shape, way, batch, f"{results[way][str(batch)]['tokens_per_s']:.0f} tok/s", flush=True)
    finally:
        clients.close()
        if router is not None:
            router.terminate()
            router.wait(timeout=30)
        tier.stop()
        shutdown_serve()
    return results
