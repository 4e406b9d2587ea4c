"""The edge tier's plugin: how the core's `hybrid` command, `hybrid up` and the overload bench reach it.

Registered under the entry-point group ``hybrid.tiers`` (pyproject.toml). Importing this module
needs no edge extra: the agent's code is imported when a command or a start calls for it.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hybrid import tiers
from hybrid.discovery import ReplicaRecord

# What the edge extra brings (pyproject.toml): ONNX Runtime, and transformers for the tokenizer.
EDGE_MODULES = ("onnxruntime", "transformers")


class EdgeTierPlugin:
    name = "edge"
    extra = "edge"
    plaintext_tiers = ()  # the agent serves mutual TLS

    def available(self) -> bool:
        return tiers.modules_installed(*EDGE_MODULES)

    def add_commands(self, commands: argparse._SubParsersAction) -> None:
        from edge_agent import commands as edge_commands

        edge_commands.add_commands(commands, self)

    def start_local(self, stack: tiers.LocalStack) -> Callable[[], None]:
        """One edge agent on the stack's artifact, exported into the state folder on the first run."""
        from edge_agent.artifacts.export import export_artifact
        from edge_agent.config import EdgeAgentConfig
        from edge_agent.server import BackgroundEdgeAgent

        console = stack.console
        artifact = stack.state_dir / "artifact"
        stale = _outdated(artifact)
        if stale:
            console.log(f"the edge artifact from an earlier run is rebuilt: {stale}")
            shutil.rmtree(artifact)
        if not (artifact / "manifest.json").is_file():
            with console.status("building the edge artifact (first run only)") as status:
                export_artifact(out=artifact, progress=lambda m: (status.update(m), console.log(m)))
        config = EdgeAgentConfig(
            artifact=artifact,
            host=stack.host,
            port=stack.port,
            region=stack.region,
            discovery=stack.discovery,
            tls=stack.tls,
        )
        with console.status("starting the edge agent"):
            edge = BackgroundEdgeAgent(config)
        console.print(f"[bold green]edge agent[/]    {edge.address}  ({edge.agent.manifest.precision})")
        return edge.stop

    def start_bench(self, bench: tiers.BenchHost) -> list[ReplicaRecord]:
        """``edge_agents`` agents, each in a process of its own, on the given artifact or the int8 one."""
        from edge_agent.config import EdgeAgentConfig
        from edge_agent.server import EdgeAgent

        config = bench.config
        artifact = config.artifact or self._bench_artifact(bench)

        def start_agent(index: int) -> ReplicaRecord:
            agent_config = EdgeAgentConfig(
                artifact=artifact,
                port=0,
                region="bench-edge",
                replica_id=f"bench-edge-{index}",
                discovery="none",
                max_batch_size=config.edge_max_batch_size,
                num_threads=config.edge_threads,
                cost_per_hour=config.cost_per_hour["edge"],
            )
            return bench.in_process(EdgeAgent, agent_config, f"edge agent {index}", cpus=config.edge_cpus).record

        bench.say(f"starting {config.edge_agents} edge agent(s)")
        with ThreadPoolExecutor(config.edge_agents) as pool:  # each loads its model in its own process
            records = list(pool.map(start_agent, range(config.edge_agents)))
        bench.provisioned("edge", config.edge_agents)
        return records

    @staticmethod
    def _bench_artifact(bench: tiers.BenchHost) -> Path:
        from edge_agent.artifacts.export import export_artifact

        bench.say("building the int8 edge artifact (cached after the first run)")
        folder, _ = export_artifact(precision="int8", progress=bench.say)
        return folder


plugin = EdgeTierPlugin()


def _outdated(artifact: Path) -> str | None:
    """Why this version cannot serve the artifact an earlier run left in the state folder, or None (also where
    there is none)."""
    from edge_agent.artifacts.lean_graph import outdated
    from edge_agent.artifacts.manifest import MODEL_FILE, read_manifest

    if not (artifact / "manifest.json").is_file():
        return None
    return outdated(read_manifest(artifact).recipe, artifact / MODEL_FILE)
