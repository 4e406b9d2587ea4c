"""The health gate of an update: a candidate artifact must load, answer canary requests without an
error, and decode within a bound of the current artifact's tokens/s, both measured here the same way.

The canary goes through the real GenerationEngine on ONNX Runtime, as a client's request would.
Decode speed comes from the engine's own counters (rows decoded / seconds spent decoding), so
prefill and scheduling do not blur it; the two artifacts are measured alternately and the best
round of each counts, which keeps the noise of a node that is serving meanwhile out of the ratio.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge_agent.engine import GenerationEngine
from edge_agent.node.config import NodeConfig, UpdateSettings
from edge_agent.server import LoadedArtifact, load_artifact
from hybrid.protocol import request_from_proto
from hybrid.v1 import inference_pb2 as pb

log = logging.getLogger("hybrid.edge.gate")

# Rounds of the canary per artifact after the warm-up: the best one counts.
MEASURED_ROUNDS = 2
CANARY_TIMEOUT_S = 120.0


@dataclass
class CanaryResult:
    requests: int
    errors: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    decode_tokens_per_s: float = 0.0
    sample: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


async def run_canary(engine: GenerationEngine, settings: UpdateSettings) -> CanaryResult:
    """Sends the canary requests at once through ``engine`` (started) and checks every answer."""
    result = CanaryResult(requests=settings.canary_requests)
    rows, seconds = engine.rows_decoded, engine.decode_seconds

    async def one() -> str:
        message = pb.GenerateRequest(
            request_id=f"canary-{uuid.uuid4().hex[:8]}",
            messages=[pb.ChatMessage(role="user", content=settings.canary_prompt)],
            max_new_tokens=settings.canary_max_new_tokens,
            temperature=0.0,
        )
        text, tokens, finished = "", 0, False
        async for chunk in engine.generate(request_from_proto(message)):
            text += chunk.text
            tokens += len(chunk.token_ids)
            finished = finished or chunk.is_last
        if not finished:
            raise RuntimeError("the answer ended without its last chunk")
        if not tokens or not text.strip():
            raise RuntimeError("it answered with no text")
        result.completion_tokens += tokens
        return text

    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(one() for _ in range(settings.canary_requests)), return_exceptions=True),
            CANARY_TIMEOUT_S,
        )
    except asyncio.TimeoutError:
        answers = [TimeoutError(f"no answer within {CANARY_TIMEOUT_S:.0f} s")]
    for answer in answers:
        if isinstance(answer, BaseException):
            result.errors.append(f"{type(answer).__name__}: {answer}")
        elif not result.sample:
            result.sample = answer
    spent = engine.decode_seconds - seconds
    result.decode_tokens_per_s = (engine.rows_decoded - rows) / spent if spent > 0 else 0.0
    return result


@dataclass
class GateReport:
    passed: bool
    reason: str
    candidate_tokens_per_s: float | None = None
    current_tokens_per_s: float | None = None
    speed_ratio: float | None = None
    min_speed_ratio: float = 0.0
    canary_requests: int = 0
    canary_sample: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


async def _start(folder: Path, node: NodeConfig, sha256: str) -> LoadedArtifact:
    loaded = await asyncio.to_thread(load_artifact, folder, node, "update-gate", None, sha256)
    loaded.engine.start()
    return loaded


@dataclass
class _Speeds:
    """What the canary rounds measured: the best decode speed of each artifact (0: not measured)."""

    canaries: int
    candidate_best: float
    current_best: float = 0.0
    failure: str = ""


async def _start_current(
    current_dir: Path,
    current_sha: str,
    node: NodeConfig,
    settings: UpdateSettings,
    engines: list[GenerationEngine],
    say: Callable[[str], None],
) -> LoadedArtifact | None:
    """The current artifact, loaded and warmed up beside the candidate; None when it cannot be measured."""
    say(f"loading the current artifact {current_sha[:12]} to compare its speed")
    try:
        current = await _start(current_dir, node, current_sha)
        engines.append(current.engine)
        await run_canary(current.engine, settings)
    except Exception as error:
        log.warning("the current artifact could not be measured (%s); the speed bound is not applied", error)
        return None
    return current


async def _measure_speeds(
    candidate: LoadedArtifact,
    current: LoadedArtifact | None,
    first: CanaryResult,
    settings: UpdateSettings,
    say: Callable[[str], None],
) -> _Speeds:
    """Canary rounds on both artifacts in turn; the candidate's answers are checked in every round."""
    speeds = _Speeds(canaries=first.requests, candidate_best=first.decode_tokens_per_s)
    # Rounds only to compare speeds: with nothing to compare against, the first answers said it all.
    for round_number in range(1, MEASURED_ROUNDS + 1 if current is not None else 1):
        say(f"measuring decode speed, round {round_number} of {MEASURED_ROUNDS}")
        for loaded in (current, candidate):
            if loaded is None:
                continue
            result = await run_canary(loaded.engine, settings)
            if loaded is candidate:
                speeds.canaries += result.requests
                if not result.ok:
                    speeds.failure = result.errors[0]
                    return speeds
                speeds.candidate_best = max(speeds.candidate_best, result.decode_tokens_per_s)
            else:
                speeds.current_best = max(speeds.current_best, result.decode_tokens_per_s)
    return speeds


def _verdict(report: GateReport, speeds: _Speeds, settings: UpdateSettings) -> GateReport:
    """Fills ``report`` from the measurements and passes it, unless a canary failed or the candidate is too slow."""
    report.canary_requests = speeds.canaries
    if speeds.failure:
        report.reason = f"the candidate failed its canary: {speeds.failure}"
        return report
    candidate_best, current_best = speeds.candidate_best, speeds.current_best
    report.candidate_tokens_per_s = round(candidate_best, 2)
    if current_best > 0:
        report.current_tokens_per_s = round(current_best, 2)
        report.speed_ratio = round(candidate_best / current_best, 3)
        if report.speed_ratio < settings.min_speed_ratio:
            report.reason = (
                f"the candidate decodes {candidate_best:.1f} tokens/s, {report.speed_ratio:.0%} of the current "
                f"artifact's {current_best:.1f} tokens/s; the gate asks for at least {settings.min_speed_ratio:.0%} "
                "(update.min_speed_ratio in agent.yaml, or --min-speed-ratio)"
            )
            return report
    report.passed = True
    report.reason = f"{speeds.canaries} canary answers without an error" + (
        f", {report.speed_ratio:.0%} of the current artifact's decode speed" if report.speed_ratio else ""
    )
    return report


async def _gate(
    candidate_dir: Path,
    candidate_sha: str,
    current_dir: Path | None,
    current_sha: str | None,
    node: NodeConfig,
    settings: UpdateSettings,
    say: Callable[[str], None],
) -> GateReport:
    report = GateReport(passed=False, reason="", min_speed_ratio=settings.min_speed_ratio)
    engines: list[GenerationEngine] = []
    try:
        say(f"loading the candidate {candidate_sha[:12]}")
        try:
            candidate = await _start(candidate_dir, node, candidate_sha)
        except Exception as error:
            report.reason = f"the candidate does not load: {type(error).__name__}: {error}"
            return report
        engines.append(candidate.engine)
        say("canary on the candidate")
        # The first round warms ONNX Runtime up; its errors count like any other.
        first = await run_canary(candidate.engine, settings)
        report.canary_sample = first.sample
        if not first.ok:
            failed = _Speeds(canaries=first.requests, candidate_best=0.0, failure=first.errors[0])
            return _verdict(report, failed, settings)
        current = None
        if current_dir is not None and current_sha is not None and settings.min_speed_ratio > 0:
            current = await _start_current(current_dir, current_sha, node, settings, engines, say)
        speeds = await _measure_speeds(candidate, current, first, settings, say)
        return _verdict(report, speeds, settings)
    finally:
        for engine in engines:
            await asyncio.to_thread(engine.stop, 0.0)


def check_candidate(
    candidate_dir: Path,
    candidate_sha: str,
    current_dir: Path | None,
    current_sha: str | None,
    node: NodeConfig,
    settings: UpdateSettings | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> GateReport:
    """Runs the gate in this process (blocking); the node keeps serving from its own."""
    return asyncio.run(
        _gate(candidate_dir, candidate_sha, current_dir, current_sha, node, settings or node.update, say)
    )
