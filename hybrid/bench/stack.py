"""The bench's stack on this machine: the tiers' replicas (through their plugins), one WAN proxy in front of each,
the router and the baseline, each in a process of its own; ``BenchStack`` is the ``BenchHost`` the tiers get."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from hybrid import constants, tiers
from hybrid.bench.overload_config import OverloadConfig
from hybrid.bench.processes import ServerProcess
from hybrid.bench.report import TierCost
from hybrid.discovery import ReplicaRecord
from hybrid.discovery.records import prefer_direct_replicas
from hybrid.serving.ports import free_port

log = logging.getLogger("hybrid.bench")


class BenchStack:
    """Everything the bench sends to, started on this machine; ``stop`` tears down what ``start`` started."""

    def __init__(self, config: OverloadConfig, say=None):
        self.config = config
        self.say = say or (lambda message: log.info("%s", message))
        self.records: list[ReplicaRecord] = []  # as the router and the baseline see them: at the WAN proxies
        self.tier_costs: dict[str, TierCost] = {}
        self.router_address = ""
        self.router_status_url = ""  # the router's /status.json, once it serves
        self.router_page_url = ""  # its /status page
        self.baseline_address = ""
        self._stoppers: list = []
        self._folder = Path(tempfile.mkdtemp(prefix="hybrid-bench-"))

    def __enter__(self) -> BenchStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        from hybrid.bench.wan import DelayProxyGroup, WanConfig, WanRoute

        config = self.config
        if config.edge_cpus:
            # Before Ray or any child starts: each inherits this process's CPUs; the edge agents get theirs.
            everything = os.sched_getaffinity(0)
            os.sched_setaffinity(0, everything - config.edge_cpus)
            self.on_stop(lambda: os.sched_setaffinity(0, everything))
        # The tiers start through their plugins; both are checked before either starts.
        needed = [tiers.require("edge")]
        if config.cloud:
            needed.append(tiers.require("cloud", alternative="pass --no-cloud for edge only"))
        self.on_stop(lambda: shutil.rmtree(self._folder, ignore_errors=True))
        direct: list[ReplicaRecord] = []
        for plugin in needed:
            direct += plugin.start_bench(self)
        routes = [WanRoute(target=f"{r.address}:{r.port}", rtt_ms=config.rtt_ms[r.tier], name=r.id) for r in direct]
        wan = self.in_process(DelayProxyGroup, WanConfig(routes=routes), "WAN proxies")
        for record, address in zip(direct, wan.address, strict=True):
            host, port = address.rsplit(":", 1)
            self.records.append(record.model_copy(update={"address": host, "port": int(port)}))
        self.say(
            "WAN proxies: "
            + ", ".join(f"{r.id} {r.tier} {config.rtt_ms[r.tier]:.0f} ms at {r.address}:{r.port}" for r in self.records)
        )
        self._warm_up()
        if "router" in config.configurations:
            self._start_router()
        if "baseline" in config.configurations:
            from hybrid.bench.baseline import BaselineConfig, RoundRobinProxy

            # Today's way in: the cloud tiers through Serve's proxies, never their replicas' own ports.
            proxied = [r for r in self.records if not r.serve_replica]
            baseline = self.in_process(RoundRobinProxy, BaselineConfig(port=0, replicas=proxied), "baseline")
            self.baseline_address = baseline.address

    # What the tiers' plugins use to start their replicas (hybrid.tiers.BenchHost).

    def in_process(
        self, server_class: type, server_config, name: str, cpus: frozenset[int] | None = None
    ) -> ServerProcess:
        process = ServerProcess(server_class, server_config, name, cpus=cpus)
        self.on_stop(process.stop)
        return process

    def on_stop(self, stopper) -> None:
        self._stoppers.append(stopper)

    def provisioned(self, tier: str, replicas: int, cost_per_hour: float | None = None) -> None:
        price = self.config.cost_per_hour[tier] if cost_per_hour is None else cost_per_hour
        self.tier_costs[tier] = TierCost(replicas, price)

    def _start_router(self) -> None:
        from hybrid.discovery import StaticFileRegistry
        from hybrid.router.server import Router, RouterConfig

        discovery = self._folder / "discovery.yaml"
        registry = StaticFileRegistry(discovery)
        for record in self.records:
            registry.register(record)
        # A port fixed here, as the router runs in a child that hands back only its gRPC address: the scaling
        # signal is sampled from its status page during its run.
        http_port = free_port()
        workers = self.config.router_workers
        router_config = RouterConfig(
            port=0 if workers == 1 else free_port(),
            discovery=f"static:{discovery}",
            http_port=http_port,
            workers=workers,
        )
        if workers == 1:
            self.router_address = self.in_process(Router, router_config, "router").address
        else:
            router = ServerProcess.router_workers(router_config, f"router ({workers} workers)")
            self.on_stop(router.stop)
            self.router_address = router.address
        self.router_status_url = f"http://{constants.DEFAULT_HOST}:{http_port}/status.json"
        self.router_page_url = f"http://{constants.DEFAULT_HOST}:{http_port}/status"
        time.sleep(3 * router_config.poll_interval_s)  # a few load polls: RTTs measured through the proxies

    def _warm_up(self) -> None:
        """Answers from every replica (through its proxy) before anything is measured.

        A GPU replica captures one CUDA graph per batch size and length bucket the first time it meets
        them; waves of 1, 2, 4 ... up to its capacity of the longest requests the workload sends make
        it capture them now, not during the first configuration's run."""
        from hybrid.client import AsyncHybridClient

        workload = self.config.workload
        longest = " ".join(["word"] * workload.prompt_words[1])

        async def one(client: AsyncHybridClient, content: str, tokens: int) -> None:
            await client.complete(messages=[{"role": "user", "content": content}], max_new_tokens=tokens)

        async def warm(record: ReplicaRecord) -> None:
            async with AsyncHybridClient(
                f"{record.address}:{record.port}", timeout_s=300, application=record.application or None
            ) as client:
                await one(client, "Say hi.", 2)
                if record.tier == "edge" or record.precision == "fp32":
                    return  # no graphs to capture on a CPU
                wave = 1
                while wave <= record.capacity:
                    await asyncio.gather(*(one(client, longest, workload.max_new_tokens[1]) for _ in range(wave)))
                    wave *= 2

        async def all_of_them() -> None:
            await asyncio.gather(*(warm(r) for r in prefer_direct_replicas(self.records)))

        self.say("warming up every replica")
        asyncio.run(all_of_them())

    def target(self, name: str) -> str:
        return self.router_address if name == "router" else self.baseline_address

    def stop(self) -> None:
        while self._stoppers:
            stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception as error:  # tear down the rest all the same
                log.warning("stopping a part of the bench stack failed: %s", error)
