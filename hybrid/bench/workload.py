"""The overload workload: what arrives when, as a deterministic open-loop schedule.

A ``WorkloadConfig`` describes the traffic: a steady rate, a burst of ``burst_multiplier`` times that
rate (reached at once, or over a linear ramp of ``ramp_s`` seconds, as real bursts build), then the steady
rate again; a mix of REALTIME, INTERACTIVE and BATCH requests; affinity keys drawn from a Zipf distribution
(a few hot keys, a long cold tail); prompt and output lengths; and each class's deadline.
``schedule(config)`` turns it into a list of ``Arrival``s: Poisson arrivals inside each phase (on the ramp,
at the rate of that moment), every choice drawn from one seeded random source, so the same config always
gives the same schedule and the baseline and the router see exactly the same traffic.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field, field_validator, model_validator

from hybrid import constants
from hybrid.bench import defaults

PRIORITIES = ("REALTIME", "INTERACTIVE", "BATCH")
PHASES = ("steady", "ramp", "burst", "recovery")
# Schedules larger than this are refused: a typo in a rate should not eat the machine's memory.
MAX_ARRIVALS = 1_000_000

_WORDS = (
    "river mountain cloud signal engine garden market letter window harbor forest planet story "
    "bridge winter summer lantern castle ocean desert music number question answer village train "
    "island paper mirror orchard rocket candle meadow thunder silver copper glacier valley"
).split()


class WorkloadConfig(BaseModel):
    """The traffic of one overload run. Every validator says what to change."""

    steady_rps: float = Field(default=defaults.BENCH_STEADY_RPS, gt=0, description="Requests a second when steady.")
    burst_multiplier: float = Field(
        default=defaults.BENCH_BURST_MULTIPLIER, ge=1, description="The burst's rate as a multiple of the steady rate."
    )
    steady_s: float = Field(default=defaults.BENCH_STEADY_S, ge=0, description="Steady phase before the burst.")
    ramp_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds over which the rate climbs linearly from the steady rate to the burst's, between the "
        "steady phase and the burst's plateau; 0: the burst starts at its full rate.",
    )
    burst_s: float = Field(
        default=defaults.BENCH_BURST_S, ge=0, description="Length of the burst at its full rate (its plateau)."
    )
    recovery_s: float = Field(
        default=defaults.BENCH_RECOVERY_S, ge=0, description="Steady phase after the burst (recovery)."
    )
    class_mix: dict[str, float] = Field(
        default_factory=lambda: {"REALTIME": 0.3, "INTERACTIVE": 0.5, "BATCH": 0.2},
        description="Fraction of requests of each priority; sums to 1.",
    )
    zipf_exponent: float = Field(
        default=1.1, gt=0, description="Skew of affinity keys: P(key k) is proportional to 1/k^s; higher is hotter."
    )
    key_count: int = Field(default=200, ge=1, description="Distinct affinity keys.")
    prompt_words: tuple[int, int] = Field(default=(8, 40), description="Prompt length in words, min and max.")
    max_new_tokens: tuple[int, int] = Field(default=(16, 64), description="Output length in tokens, min and max.")
    deadlines_s: dict[str, float] = Field(
        default_factory=lambda: {
            "REALTIME": defaults.BENCH_REALTIME_DEADLINE_S,
            "INTERACTIVE": defaults.BENCH_INTERACTIVE_DEADLINE_S,
            "BATCH": defaults.BENCH_BATCH_DEADLINE_S,
        },
        description="Client-side deadline of each priority, seconds.",
    )
    arrivals: Literal["poisson", "uniform"] = Field(
        default="poisson", description="poisson: exponential gaps; uniform: evenly spaced at the phase's rate."
    )
    seed: int = Field(default=0, description="Seed of every random choice; the same seed gives the same schedule.")

    @field_validator("class_mix")
    @classmethod
    def _mix(cls, mix: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(mix) - set(PRIORITIES))
        if unknown:
            raise ValueError(f"class_mix names {', '.join(unknown)}: use only {', '.join(PRIORITIES)}")
        negative = sorted(k for k, v in mix.items() if v < 0)
        if negative:
            raise ValueError(f"class_mix fractions of {', '.join(negative)} are negative: use values from 0 to 1")
        total = sum(mix.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"class_mix fractions sum to {total:g}; make them sum to 1, e.g. REALTIME 0.3, INTERACTIVE 0.5, BATCH 0.2"
            )
        return {name: float(mix.get(name, 0.0)) for name in PRIORITIES}

    @field_validator("deadlines_s")
    @classmethod
    def _deadlines(cls, deadlines: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(deadlines) - set(PRIORITIES))
        if unknown:
            raise ValueError(f"deadlines_s names {', '.join(unknown)}: use only {', '.join(PRIORITIES)}")
        missing = [p for p in PRIORITIES if p not in deadlines]
        if missing:
            raise ValueError(f"deadlines_s lacks {', '.join(missing)}: give every priority a deadline in seconds")
        bad = sorted(k for k, v in deadlines.items() if not v > 0)
        if bad:
            raise ValueError(f"deadlines_s of {', '.join(bad)} must be positive seconds")
        return {p: float(deadlines[p]) for p in PRIORITIES}

    @field_validator("prompt_words")
    @classmethod
    def _prompt_words(cls, bounds: tuple[int, int]) -> tuple[int, int]:
        low, high = bounds
        if low < 1:
            raise ValueError(f"prompt_words minimum is {low}: a prompt needs at least 1 word")
        if low > high:
            raise ValueError(f"prompt_words is ({low}, {high}): the minimum must not exceed the maximum")
        if high * 12 > constants.MAX_PROMPT_CHARS:
            raise ValueError(
                f"prompt_words maximum {high} makes prompts longer than {constants.MAX_PROMPT_CHARS} characters: lower it"
            )
        return bounds

    @field_validator("max_new_tokens")
    @classmethod
    def _output_tokens(cls, bounds: tuple[int, int]) -> tuple[int, int]:
        low, high = bounds
        if low < 1:
            raise ValueError(f"max_new_tokens minimum is {low}: ask for at least 1 token")
        if low > high:
            raise ValueError(f"max_new_tokens is ({low}, {high}): the minimum must not exceed the maximum")
        if high > constants.MAX_NEW_TOKENS_LIMIT:
            raise ValueError(
                f"max_new_tokens maximum {high} is above the servers' limit {constants.MAX_NEW_TOKENS_LIMIT}: lower it"
            )
        return bounds

    @model_validator(mode="after")
    def _size(self) -> WorkloadConfig:
        if self.duration_s <= 0:
            raise ValueError("steady_s, ramp_s, burst_s and recovery_s are all 0: give at least one phase a length")
        if self.ramp_s > 0 and self.burst_multiplier == 1:
            raise ValueError(
                f"ramp_s is {self.ramp_s:g} but burst_multiplier is 1, so there is nothing to ramp to: "
                "raise burst_multiplier or set ramp_s to 0"
            )
        expected = self.expected_requests()
        if expected > MAX_ARRIVALS:
            raise ValueError(
                f"this workload sends about {expected:.0f} requests, more than {MAX_ARRIVALS}: "
                "lower steady_rps, burst_multiplier or the phase lengths"
            )
        return self

    @property
    def duration_s(self) -> float:
        return self.steady_s + self.ramp_s + self.burst_s + self.recovery_s

    def phases(self) -> list[Phase]:
        """Each phase, in order; phases of length 0 are left out."""
        steady, burst = self.steady_rps, self.steady_rps * self.burst_multiplier
        shapes = (
            ("steady", self.steady_s, steady, steady),
            ("ramp", self.ramp_s, steady, burst),
            ("burst", self.burst_s, burst, burst),
            ("recovery", self.recovery_s, steady, steady),
        )
        spans, start = [], 0.0
        for name, length, rate, end_rate in shapes:
            if length > 0:
                spans.append(Phase(name, start, start + length, rate, end_rate))
            start += length
        return spans

    def burst_window(self) -> tuple[float, float]:
        """Start and end of the burst's plateau (the full rate, after any ramp), seconds from the run's start."""
        start = self.steady_s + self.ramp_s
        return start, start + self.burst_s

    def ramp_window(self) -> tuple[float, float]:
        """Start and end of the ramp up to the burst's rate, seconds from the run's start (equal where none)."""
        return self.steady_s, self.steady_s + self.ramp_s

    def expected_requests(self) -> float:
        return sum(phase.expected_requests() for phase in self.phases())


class Phase(NamedTuple):
    """A stretch of the schedule whose rate goes linearly from ``rate`` at its start to ``end_rate`` at its end
    (the same for all but the ramp)."""

    name: str
    start_s: float
    end_s: float
    rate: float
    end_rate: float

    def expected_requests(self) -> float:
        return (self.end_s - self.start_s) * (self.rate + self.end_rate) / 2

    def time_of(self, expected: float) -> float:
        """When, counting from the phase's start, ``expected`` requests are due: the inverse of the rate's
        integral, so that arrivals drawn on that count's scale follow the changing rate."""
        climb = (self.end_rate - self.rate) / (self.end_s - self.start_s)
        if climb == 0:
            return expected / self.rate
        # rate x t + climb x t^2 / 2 = expected, solved for t >= 0.
        return (math.sqrt(self.rate**2 + 2 * climb * expected) - self.rate) / climb


@dataclass(frozen=True)
class Arrival:
    """One request of the schedule. ``at_s`` counts from the run's start; ``deadline_s`` from its sending."""

    at_s: float
    request_id: str
    priority: str
    affinity_key: str
    prompt: str
    max_new_tokens: int
    deadline_s: float
    phase: str


class ZipfKeys:
    """Draws key ranks 1..n with P(k) proportional to 1/k^s (rank 1 hottest), from a given random source."""

    def __init__(self, count: int, exponent: float):
        weights = [1.0 / (rank**exponent) for rank in range(1, count + 1)]
        total = sum(weights)
        self.cumulative = list(itertools.accumulate(w / total for w in weights))
        self.cumulative[-1] = 1.0

    def probability(self, rank: int) -> float:
        return self.cumulative[rank - 1] - (self.cumulative[rank - 2] if rank > 1 else 0.0)

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self.cumulative, rng.random()) + 1


def _prompt(rng: random.Random, key: str, words: int) -> str:
    body = " ".join(rng.choice(_WORDS) for _ in range(words))
    return f"Topic {key}. Write about: {body}"


def schedule(config: WorkloadConfig) -> list[Arrival]:
    """The arrivals of ``config``, sorted by time. Deterministic: the same config gives the same list."""
    rng = random.Random(config.seed)
    keys = ZipfKeys(config.key_count, config.zipf_exponent)
    priorities = [p for p in PRIORITIES if config.class_mix[p] > 0]
    cumulative = list(itertools.accumulate(config.class_mix[p] for p in priorities))
    arrivals: list[Arrival] = []
    for phase in config.phases():
        due = 0.0  # requests due since the phase's start, on the scale of its rate's integral
        for index in itertools.count(1):
            # Uniform arrivals count from the phase's start, so rounding does not add up over a long phase.
            due = due + rng.expovariate(1.0) if config.arrivals == "poisson" else float(index)
            at = phase.start_s + phase.time_of(due)
            if at >= phase.end_s:
                break
            priority = priorities[
                min(len(priorities) - 1, bisect.bisect_left(cumulative, rng.random() * cumulative[-1]))
            ]
            key = f"k{keys.draw(rng):04d}"
            arrivals.append(
                Arrival(
                    at_s=at,
                    request_id=f"bench-{config.seed}-{len(arrivals):06d}",
                    priority=priority,
                    affinity_key=key,
                    prompt=_prompt(rng, key, rng.randint(*config.prompt_words)),
                    max_new_tokens=rng.randint(*config.max_new_tokens),
                    deadline_s=config.deadlines_s[priority],
                    phase=phase.name,
                )
            )
    return arrivals
