"""The status page and the scaling signal under a burst: does each tier's desired replica count rise before the
burst peaks?

Synthetic replicas (``hybrid.bench.synthetic``: real hybrid.v1.Inference servers with a fixed pace, no model)
of every tier sit behind a real router on loopback, all on one event loop. An open-loop sender offers a steady
rate, ramps it up tenfold, holds it, and drops back; every half second the run records, per tier, the arrivals
that put the tier first, the router's forecast and its desired replica count, beside the replicas the tier
would need at the rate offered *at that moment* (Little's law, as the signal computes it). The lead is how many
seconds before the offered rate peaks the desired count first reaches what the peak needs. The rates are
those actually sent (over the last second), which fall short of the schedule where the one process's two
cores cannot keep up.

At the burst's top it screenshots ``/status`` in headless Chromium (Debian's package, through Playwright).

    python benchmarks/status_burst.py --out bench-status --screenshot bench-status/status-page.png
    python benchmarks/status_burst.py --out bench-status-now --horizon-s 0     # the same without the forecast
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import tempfile
import time
from pathlib import Path

import grpc

from hybrid.bench.scaling_signal import first_reached
from hybrid.bench.status_shots import QUIET_CHROMIUM, chromium_path
from hybrid.bench.synthetic import SyntheticReplica, SyntheticReplicaConfig
from hybrid.client import build_request
from hybrid.discovery.static import StaticFileRegistry
from hybrid.router.scaling import HORIZON_S, TARGET_UTILIZATION, replicas_for
from hybrid.router.server import Router, RouterConfig
from hybrid.v1 import inference_pb2_grpc as pb_grpc

# Replica id, tier, capacity, price per hour.
FLEET = (
    ("edge-1", "edge", 4, 0.05),
    ("edge-2", "edge", 4, 0.05),
    ("private-1", "private", 8, 1.20),
    ("public-1", "public", 16, 3.40),
    ("public-2", "public", 16, 3.40),
)
# Each class's share of the requests, and the tier its class tries first.
MIX = (("realtime", 0.2, "edge"), ("interactive", 0.6, "private"), ("batch", 0.2, "public"))


def offered_rate(t: float, args: argparse.Namespace) -> float:
    """Requests a second at ``t`` seconds: steady, a linear ramp up, the peak held, a ramp down, steady."""
    up_at, peak_at = args.steady_s, args.steady_s + args.ramp_s
    down_at, low_at = peak_at + args.hold_s, peak_at + args.hold_s + args.ramp_s / 2
    if t < up_at or t >= low_at:
        return args.base_rps
    if t < peak_at:
        return args.base_rps + (args.peak_rps - args.base_rps) * (t - up_at) / args.ramp_s
    if t < down_at:
        return args.peak_rps
    return args.peak_rps - (args.peak_rps - args.base_rps) * (t - down_at) / (args.ramp_s / 2)


async def start_fleet(args: argparse.Namespace, discovery: Path) -> list[SyntheticReplica]:
    registry, replicas = StaticFileRegistry(discovery), []
    for replica_id, tier, capacity, price in FLEET:
        config = SyntheticReplicaConfig(
            replica_id=replica_id, tier=tier, host="127.0.0.1", capacity=capacity, token_ms=args.token_ms,
            first_token_ms=args.first_token_ms, precision="int8" if tier == "edge" else "bf16",
        )  # fmt: skip
        replica = SyntheticReplica(config)
        await replica.start()
        registry.register(replica.record().model_copy(update={"cost_per_hour": price}))
        replicas.append(replica)
    return replicas


def sent_per_s(sends: collections.deque, now: float, tier: str | None = None) -> int:
    """Requests sent over the last second (whose class puts ``tier`` first, where one is named)."""
    while sends and now - sends[0][0] > 1.0:
        sends.popleft()
    return sum(1 for _, first in sends if tier is None or first == tier)


async def send_and_count(inference, priority: str, index: int, tokens: int, outcomes: dict[str, int]) -> None:
    """Sends one request of ``priority`` to the router through ``inference`` (its hybrid.v1.Inference client),
    reads the answer to the end, and counts how it ended in ``outcomes`` ("ok" or the gRPC status's name)."""
    request = build_request(f"{priority} request {index}", priority=priority, max_new_tokens=tokens)
    try:
        async for _ in inference.Generate(request, timeout=20):
            pass
        outcomes["ok"] = outcomes.get("ok", 0) + 1
    except grpc.aio.AioRpcError as error:
        outcomes[error.code().name] = outcomes.get(error.code().name, 0) + 1


async def screenshot(url: str, path: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=list(QUIET_CHROMIUM))
        page = await browser.new_page(viewport={"width": 1400, "height": 1150})
        await page.goto(url)
        await page.wait_for_function("document.querySelector('#cost-all').textContent.startsWith('$')")
        await asyncio.sleep(2.5)  # one more refresh, so the figures are the burst's
        await page.screenshot(path=path, full_page=True)
        await browser.close()


def need_now(rate: float, capacity: float, request_s: float) -> int:
    return replicas_for(rate, request_s, capacity * TARGET_UTILIZATION)


async def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="status-burst-"))
    replicas = await start_fleet(args, workdir / "discovery.yaml")
    config = RouterConfig(
        host="127.0.0.1", port=0, http_port=0, discovery=f"static:{workdir / 'discovery.yaml'}", poll_interval_s=0.5
    )
    router = Router(config)
    router.dataplane.scaling.horizon_s = args.horizon_s
    await router.start()
    channel = grpc.aio.insecure_channel(router.address)
    inference = pb_grpc.InferenceStub(channel)
    rng, outcomes, tasks, samples = random.Random(args.seed), {}, set(), []
    sends: collections.deque = collections.deque()
    first_tier = {priority: tier for priority, _, tier in MIX}
    duration = args.steady_s + args.ramp_s * 1.5 + args.hold_s + args.tail_s
    peak_at = args.steady_s + args.ramp_s
    request_s = (args.first_token_ms + args.token_ms * (args.max_new_tokens - 1)) / 1000
    began, owed, sent, next_sample, shot = time.monotonic(), 0.0, 0, 0.0, None
    while (t := time.monotonic() - began) < duration:
        rate = offered_rate(t, args)
        owed += rate * args.tick_s
        while owed >= 1:
            owed -= 1
            priority = rng.choices([m[0] for m in MIX], [m[1] for m in MIX])[0]
            sends.append((time.monotonic(), first_tier[priority]))
            task = asyncio.ensure_future(send_and_count(inference, priority, sent, args.max_new_tokens, outcomes))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if t >= next_sample:
            next_sample += 0.5
            now = time.monotonic()
            sample = {"t": round(t, 2), "offered_rps": round(rate, 2), "sent_rps": sent_per_s(sends, now)}
            for tier, capacity in (("edge", 4), ("private", 8), ("public", 16)):
                signal = router.dataplane.scaling.tiers[tier]
                tier_rate = sent_per_s(sends, now, tier)
                sample[tier] = {
                    "sent_per_s": tier_rate,
                    "arrivals_per_s": round(signal.arrivals_per_s, 2),
                    "forecast_per_s": round(signal.forecast_per_s, 2),
                    "desired": signal.desired,
                    "driver": signal.driver,
                    "need_now": need_now(tier_rate, capacity, request_s),
                }
            samples.append(sample)
        if args.screenshot and shot is None and t >= peak_at + args.hold_s / 2:
            shot = asyncio.ensure_future(screenshot(f"http://{router.http_address}/status", args.screenshot))
        await asyncio.sleep(args.tick_s)
    if shot is not None:
        await shot
    await asyncio.gather(*tasks, return_exceptions=True)
    await channel.close()
    await router.stop()
    for replica in replicas:
        await replica.stop()
    return summarize(samples, outcomes, sent, peak_at, args)


def summarize(samples: list[dict], outcomes: dict, sent: int, peak_at: float, args: argparse.Namespace) -> dict:
    """Per tier: what the peak needs (Little's law at the mean rate sent while the peak held), when the desired
    count first reached it, and how long before the scheduled peak that was (the lead; negative: after)."""
    request_s = (args.first_token_ms + args.token_ms * (args.max_new_tokens - 1)) / 1000
    held = [s for s in samples if peak_at <= s["t"] < peak_at + args.hold_s]
    leads = {}
    for tier, capacity in (("edge", 4), ("private", 8), ("public", 16)):
        held_rate = sum(s[tier]["sent_per_s"] for s in held) / max(1, len(held))
        peak_need = need_now(held_rate, capacity, request_s)
        reached = first_reached([(s["t"], s[tier]["desired"]) for s in samples], args.steady_s, peak_need)
        leads[tier] = {
            "held_rate_per_s": round(held_rate, 2),
            "peak_need": peak_need,
            "desired_reached_peak_need_at_s": reached,
            "lead_s": None if reached is None else round(peak_at - reached, 2),
            "most_desired": max(s[tier]["desired"] for s in samples),
        }
    return {
        "profile": {
            k: getattr(args, k) for k in ("base_rps", "peak_rps", "steady_s", "ramp_s", "hold_s", "tail_s", "horizon_s")
        },
        "replica": {"token_ms": args.token_ms, "first_token_ms": args.first_token_ms, "tokens": args.max_new_tokens},
        "offered_peak_at_s": peak_at,
        "sent": sent,
        "outcomes": outcomes,
        "leads": leads,
        "samples": samples,
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    t = [s["t"] for s in samples]
    figure, (rates, counts) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    rates.plot(t, [s["offered_rps"] for s in samples], color="black", lw=0.8, ls="--", label="scheduled, all classes")
    rates.plot(t, [s["sent_rps"] for s in samples], color="black", label="sent, all classes")
    for tier, color in (("edge", "tab:green"), ("private", "tab:blue"), ("public", "tab:purple")):
        rates.plot(t, [s[tier]["sent_per_s"] for s in samples], color=color, lw=0.6, alpha=0.5, label=f"{tier}: sent")
        rates.plot(t, [s[tier]["arrivals_per_s"] for s in samples], color=color, label=f"{tier}: arrivals (level)")
        rates.plot(
            t, [s[tier]["forecast_per_s"] for s in samples], color=color, ls="--", lw=1, label=f"{tier}: forecast"
        )
        counts.step(t, [s[tier]["desired"] for s in samples], where="post", color=color, label=f"{tier}: desired")
        counts.plot(
            t, [s[tier]["need_now"] for s in samples], color=color, ls=":", lw=1, label=f"{tier}: need at rate now"
        )
    for axis in (rates, counts):
        axis.axvline(report["offered_peak_at_s"], color="grey", lw=0.8)
        axis.legend(fontsize=7, ncol=2)
    rates.set_ylabel("requests / s")
    counts.set_ylabel("replicas")
    counts.set_xlabel("seconds (grey: the offered rate reaches its peak)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-status", help="folder for status_burst.json and the plot")
    parser.add_argument("--screenshot", default="", help="PNG of /status at the burst's top (needs chromium)")
    parser.add_argument("--base-rps", type=float, default=4.0)
    parser.add_argument("--peak-rps", type=float, default=40.0)
    parser.add_argument("--steady-s", type=float, default=25.0)
    parser.add_argument("--ramp-s", type=float, default=10.0)
    parser.add_argument("--hold-s", type=float, default=10.0)
    parser.add_argument("--tail-s", type=float, default=15.0)
    parser.add_argument("--token-ms", type=float, default=40.0)
    parser.add_argument("--first-token-ms", type=float, default=30.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--tick-s", type=float, default=0.05)
    parser.add_argument(
        "--horizon-s", type=float, default=HORIZON_S, help="how far ahead the router forecasts; 0: the rate now"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(run(args))
    (out / "status_burst.json").write_text(json.dumps(report, indent=1))
    plot(report, out / "scaling_signal.png")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
