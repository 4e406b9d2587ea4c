"""Faults without hangs: a steady load through a real router process while a replica, discovery or the
router itself fails. Replicas are synthetic (the real service and server shell, answers at a fixed pace),
each a process of its own, so that kill -9 and SIGSTOP strike real processes."""

from __future__ import annotations

import pytest

from hybrid.bench.faults import SCENARIOS, FaultResult, FaultRunConfig, run_scenario

pytestmark = pytest.mark.slow

# A dead or frozen replica out of rotation, and a recovered one back in it, within these.
DETECT_S = 2.0
RETURN_S = 5.0
# Shorter than the benchmark's runs (benchmarks/faults.py), long enough for a fault and its repair.
RUN = FaultRunConfig(rate=20, seconds=9, fault_at_s=2, repair_at_s=4, deadline_s=5)


def _check(result: FaultResult, *, lost_mid_answer_allowed: bool = False) -> None:
    summary = result.row()
    assert result.hung == 0, f"streams hung to their deadline: {summary}"
    assert result.lost_without_first_token == 0, f"requests lost that could have been retried: {summary}"
    if not lost_mid_answer_allowed:
        assert result.lost_with_first_token == 0, summary
    assert len(result.outcomes) >= RUN.rate * RUN.seconds * 0.9, summary


@pytest.mark.parametrize(
    "name",
    ["replica killed (kill -9), then restarted", "replica frozen (SIGSTOP), then resumed"],
)
async def test_a_dead_or_frozen_replica_is_out_at_once_and_back_soon_after(name):
    result = await run_scenario(name, SCENARIOS[name], RUN)
    _check(result, lost_mid_answer_allowed=True)
    assert result.detect_s is not None and result.detect_s <= DETECT_S, result.row()
    assert result.return_s is not None and result.return_s <= RETURN_S, result.row()


@pytest.mark.parametrize(
    "name",
    ["replica removed from discovery while it streams, then re-added", "replica drained (SIGTERM), then restarted"],
)
async def test_a_replica_that_leaves_is_drained_not_cut(name):
    result = await run_scenario(name, SCENARIOS[name], RUN)
    _check(result)
    assert result.return_s is not None and result.return_s <= RETURN_S, result.row()


async def test_a_deleted_discovery_file_keeps_the_last_view():
    name = "static discovery file deleted, then rewritten"
    result = await run_scenario(name, SCENARIOS[name], RUN)
    _check(result)
    assert result.detect_s is None, "the router dropped replicas because its discovery file went away"


@pytest.mark.parametrize("name", ["router restarted (SIGTERM)", "router killed (kill -9) and started again"])
async def test_a_router_restart_loses_only_answers_it_cut(name):
    result = await run_scenario(name, SCENARIOS[name], RUN)
    _check(result, lost_mid_answer_allowed=name.startswith("router killed"))


def _edge_agent(artifact):
    from edge_agent.config import EdgeAgentConfig
    from edge_agent.server import EdgeAgent

    def victim(discovery: str, replica_id: str, port: int):
        return EdgeAgent, EdgeAgentConfig(
            artifact=artifact, port=port, replica_id=replica_id, discovery=discovery, drain_grace_s=RUN.deadline_s
        )

    return victim


async def test_a_real_edge_agent_drained_with_sigterm_finishes_its_answers_and_loses_none(int8_artifact):
    """The graceful path of an update or a shutdown, on the edge agent itself: it deregisters, refuses new
    work (retried elsewhere), finishes what it streams, and exits; restarted, it serves again."""
    name = "replica drained (SIGTERM), then restarted"
    result = await run_scenario(f"edge agent {name}", SCENARIOS[name], RUN, victim=_edge_agent(int8_artifact))
    _check(result)
    assert any(o.replica == "replica-b" for o in result.outcomes), "the edge agent took part of the load"
