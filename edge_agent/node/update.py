"""`hybrid-edge update`: a new artifact, health-gated, switched to atomically, rolled back on failure.

1. fetch and verify it into the store beside the current one (nothing is left when that fails); on a
   node that trusts a signing key (agent.yaml trust_key, or --trust) an unsigned or wrongly signed
   artifact is refused here, before anything else;
2. gate it in this process (edge_agent.node.canary): it loads, answers the canary, decodes within
   update.min_speed_ratio of the current artifact's tokens/s, and no canary request errs;
3. flip `current` to it (`previous` keeps the old one) and send the running agent SIGHUP;
4. wait while the agent loads it, switches without dropping a request, and watches it through its
   probation; the agent itself switches back, and restores the links, if the new artifact fails.

A refused candidate is removed; the store keeps `current` and `previous`, nothing more. Without a
running agent the flip is the whole update: the agent serves the new artifact when it starts.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent import defaults
from edge_agent.artifacts.signing import TrustedKey
from edge_agent.artifacts.store import ArtifactStore, Progress, check_sha256
from edge_agent.node.canary import check_candidate
from edge_agent.node.config import EdgeNodeError, NodeConfig, StateFile, UpdateRecord, UpdateSettings, running_agent
from hybrid.errors import ArtifactError

log = logging.getLogger("hybrid.edge.update")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def update_node(
    node: NodeConfig,
    source: str,
    sha256: str,
    *,
    trust: Path | None = None,
    min_speed_ratio: float | None = None,
    probation_s: float | None = None,
    wait: bool = True,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> UpdateRecord | None:
    """Runs one update; returns its record (None when the node serves that artifact already)."""
    sha256 = check_sha256(sha256)
    layout = node.layout
    store = ArtifactStore(layout.artifacts, _trusted_key(node, trust))
    state = StateFile(layout.state_file)
    overrides = {k: v for k, v in (("min_speed_ratio", min_speed_ratio), ("probation_s", probation_s)) if v is not None}
    settings = node.update.model_copy(update=overrides)
    with layout.update_lock():
        links = store.links()
        if links.current == sha256:
            say(f"this node serves {sha256[:12]} already; nothing to do")
            return None
        record = state.save(
            UpdateRecord(
                source=source,
                from_sha256=links.current,
                to_sha256=sha256,
                outcome="checking",
                probation_s=settings.probation_s,
            )
        )
        try:
            return _gate_and_switch(node, store, state, record, source, settings, wait, progress, say)
        except ArtifactError as error:
            state.finish(record, "refused", str(error))
            raise
        except BaseException:
            # Ctrl-C or a crash before the agent was told: the node serves what it served.
            current = state.read().find(record.id)
            if current is not None and current.outcome == "checking":
                state.finish(current, "interrupted", "the update was stopped before the switch; nothing changed")
                store.prune()
            raise


def _trusted_key(node: NodeConfig, trust: Path | None) -> TrustedKey | None:
    """The key the new artifact must be signed by: --trust, else the node's own; they may not disagree, since the
    agent checks the node's key again before it loads anything."""
    own = node.trusted_key()
    given = TrustedKey.load(trust) if trust is not None else None
    if own is not None and given is not None and own.id != given.id:
        raise EdgeNodeError(
            f"--trust {trust} is key {given.id}, but this node trusts key {own.id} ({node.trust_key}), and its agent "
            "would refuse what the other key signed: sign with the node's key, or install the new key with "
            "`hybrid-edge install --trust`"
        )
    return given or own


def _gate_and_switch(
    node: NodeConfig,
    store: ArtifactStore,
    state: StateFile,
    record: UpdateRecord,
    source: str,
    settings: UpdateSettings,
    wait: bool,
    progress: Progress | None,
    say: Callable[[str], None],
) -> UpdateRecord:
    sha256, links = record.to_sha256, store.links()
    say(f"fetching {sha256[:12]} from {source}")
    manifest, fetched = store.add(source, sha256, progress)
    record.to_precision = manifest.precision
    say(f"{'fetched and verified' if fetched else 'verified the stored copy of'} {sha256[:12]} ({manifest.precision})")

    current_dir = store.path(links.current) if links.current else None
    report = check_candidate(store.path(sha256), sha256, current_dir, links.current, node, settings, say)
    if not report.passed:
        record = state.finish(record, "refused", f"health gate: {report.reason}", gate=report.to_dict())
        store.prune()
        return record
    say(f"health gate passed: {report.reason}")

    with store.locked():
        before = store.flip(sha256)
    record = state.save(
        record.model_copy(
            update={
                "outcome": "switching",
                "links_before": {"current": before.current, "previous": before.previous},
                "gate": report.to_dict(),
            }
        )
    )
    agent = running_agent(node.layout)
    if agent is None:
        record = state.finish(
            record,
            "switched",
            "no agent was running: it serves this artifact when it starts",
            switched_at=time.time(),
        )
        store.prune()
        return record
    say(f"switching the running agent (pid {agent.pid}) to {sha256[:12]}")
    os.kill(agent.pid, signal.SIGHUP)
    if not wait:
        return record
    record = _wait_for_outcome(store, state, record, agent.pid, defaults.EDGE_AGENT_WAIT_S + settings.probation_s, say)
    store.prune()
    return record


def _wait_for_outcome(
    store: ArtifactStore,
    state: StateFile,
    record: UpdateRecord,
    pid: int,
    timeout_s: float,
    say: Callable[[str], None],
) -> UpdateRecord:
    deadline = time.monotonic() + timeout_s
    seen = record.outcome
    while time.monotonic() < deadline:
        current = state.read().find(record.id) or record
        if current.finished:
            return current
        if current.outcome != seen:
            seen = current.outcome
            if seen == "probation":
                say(f"the agent serves it now; probation of {current.probation_s:g} s")
        if not _alive(pid):
            time.sleep(1.0)  # it may have written its outcome on the way out
            current = state.read().find(record.id) or current
            if current.finished:
                return current
            # The agent restarted by systemd must not find this unconfirmed switch in place.
            with store.locked():
                store.set_links(current.rollback_links())
            return state.finish(
                current,
                "interrupted",
                f"the agent (pid {pid}) exited during the switch; the node went back to the previous artifact: "
                "see its log (journalctl -u hybrid-edge) and run the update again",
            )
        time.sleep(0.2)
    raise EdgeNodeError(
        f"the agent has not finished switching to {record.to_sha256[:12]} after {timeout_s:.0f} s; `hybrid-edge "
        "status` shows where it stands (the agent rolls back by itself if the new artifact fails)"
    )
