"""The `hybrid` command line (DESIGN "Command line")."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from hybrid import constants
from hybrid.errors import HybridError
from hybrid.router import defaults as router_defaults


def _console():
    from rich.console import Console

    return Console(stderr=True)


def cmd_export(args: argparse.Namespace) -> int:
    from edge_agent.artifacts.export import export_artifact

    console = _console()
    with console.status("exporting") as status:
        folder, manifest = export_artifact(
            model=args.model,
            precision=args.precision,
            out=Path(args.out) if args.out else None,
            force=args.force,
            progress=lambda message: (status.update(message), console.log(message)),
        )
    quality = manifest.quality
    console.print(f"[bold green]artifact[/] {folder}  precision {manifest.precision}")
    if quality is not None:
        verdict = "passed" if quality.passed else "FAILED (forced)"
        console.print(
            f"quality: perplexity {quality.perplexity:.2f} vs {quality.reference_perplexity:.2f} full model "
            f"(+{quality.perplexity_increase:.2%}), next-token agreement {quality.next_token_agreement:.1%}, gate {verdict}"
        )
    print(folder)
    return 0


def cmd_artifacts_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from edge_agent.artifacts.server import ArtifactServer

    server = ArtifactServer(Path(args.dir), args.host, args.port)
    served = server.catalog.all()
    for artifact in served:
        print(
            f"{artifact.sha256}  {artifact.manifest.model} {artifact.manifest.precision}  {server.url(artifact.sha256)}",
            flush=True,
        )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    logging.getLogger("hybrid.artifacts").info(
        "artifact server ready on %s (%d artifacts from %s)", server.address, len(served), args.dir
    )
    stop.wait()
    server.stop()
    return 0


def cmd_artifacts_hash(args: argparse.Namespace) -> int:
    from edge_agent.artifacts.manifest import manifest_sha256, verify_artifact

    verify_artifact(Path(args.dir))
    print(manifest_sha256(Path(args.dir)))
    return 0


def _edge_config(args: argparse.Namespace):
    from edge_agent.config import EdgeAgentConfig

    return EdgeAgentConfig(
        artifact=Path(args.artifact),
        host=args.host,
        port=args.port,
        region=args.region,
        zone=args.zone,
        replica_id=args.replica_id,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queued_requests=args.max_queued,
        metrics_port=args.metrics_port,
        discovery=args.discovery,
        cost_per_hour=args.cost_per_hour,
    )


def cmd_edge_serve(args: argparse.Namespace) -> int:
    from edge_agent.server import serve_forever

    asyncio.run(serve_forever(_edge_config(args)))
    return 0


def _cloud_settings(args: argparse.Namespace):
    from cloud.config import DeploymentSettings, ReplicaSettings

    settings = ReplicaSettings(
        tier=args.tier,
        region=args.region,
        zone=args.zone,
        model=args.model,
        precision=args.precision,
        device=args.device,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queued_requests=args.max_queued,
    )
    deployment = DeploymentSettings(
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests or settings.max_batch_size / 2,
        max_ongoing_requests=args.max_ongoing_requests or settings.max_batch_size,
        max_queued_requests=args.serve_max_queued,
        num_gpus=args.num_gpus,
        num_cpus=args.num_cpus,
    )
    return settings, deployment


def cmd_cloud_serve(args: argparse.Namespace) -> int:
    from cloud.server import CloudTier, serve_forever

    settings, deployment = _cloud_settings(args)
    tier = CloudTier(
        settings,
        deployment,
        port=args.port,
        discovery=args.discovery,
        cost_per_hour=args.cost_per_hour,
        advertise_host=args.advertise_host,
        app_name=args.app_name,
        num_cpus=args.ray_cpus,
    )
    serve_forever(tier)
    return 0


def cmd_cloud_config(args: argparse.Namespace) -> int:
    from cloud.serve_config import dump_serve_config, serve_config

    settings, deployment = _cloud_settings(args)
    if deployment.num_gpus is None:
        raise ValueError("say how many GPUs each replica gets: --num-gpus 1 for a GPU tier, 0 for CPU")
    text = dump_serve_config(serve_config(settings, deployment, args.app_name or settings.tier, args.port))
    if args.out:
        Path(args.out).write_text(text)
        print(args.out)
    else:
        print(text, end="")
    return 0


def cmd_router_serve(args: argparse.Namespace) -> int:
    from hybrid.router.server import RouterConfig, serve_forever

    config = RouterConfig(
        host=args.host,
        port=args.port,
        discovery=args.discovery,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        realtime_ttft_ms=args.realtime_ttft_ms,
    )
    asyncio.run(serve_forever(config))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    import grpc

    from hybrid.client import RequestFailed, build_request
    from hybrid.v1 import inference_pb2 as pb
    from hybrid.v1 import router_admin_pb2_grpc as admin_grpc

    prompt, messages = (args.prompt, None) if args.raw else (None, [{"role": "user", "content": args.prompt}])
    request = build_request(
        prompt, messages, priority=args.priority, affinity_key=args.affinity_key, full_precision=args.full_precision
    )
    with grpc.insecure_channel(args.target) as channel:
        try:
            reply = admin_grpc.RouterAdminStub(channel).Explain(request, timeout=args.timeout)
        except grpc.RpcError as error:
            raise RequestFailed(error.code(), error.details() or "") from None
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(reply)))
        return 0
    chosen = reply.chosen
    where = (
        f"{pb.Tier.Name(chosen.tier).lower()} replica {chosen.replica_id} at {chosen.address} ({chosen.precision})"
        if chosen.replica_id
        else "nowhere: RESOURCE_EXHAUSTED"
    )
    print(f"class {reply.request_class}; would go to {where}")
    for reason in reply.reasons:
        print(f"  - {reason}")
    return 0


def _print_chunks(chunks, as_json: bool) -> None:
    from google.protobuf.json_format import MessageToDict

    from hybrid.client import Completion

    completion = Completion()
    for chunk in chunks:
        completion.add(chunk)
        if as_json:
            print(json.dumps(MessageToDict(chunk, preserving_proto_field_name=True)), flush=True)
        else:
            print(chunk.text, end="", flush=True)
    if not as_json:
        print()
        served = completion.served_by
        if served is not None:
            from hybrid.v1 import inference_pb2 as pb

            usage, timing = completion.usage, completion.timing
            _console().print(
                f"[dim]served by {pb.Tier.Name(served.tier).lower()} replica {served.replica_id} in {served.region} "
                f"({served.precision}); {usage.prompt_tokens}+{usage.completion_tokens} tokens, first token after "
                f"{timing.time_to_first_token_ms:.0f} ms, total {timing.total_ms:.0f} ms, finish {completion.finish_reason}[/]"
            )


def cmd_generate(args: argparse.Namespace) -> int:
    from hybrid.client import HybridClient

    params = dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        stop=args.stop,
        priority=args.priority,
        affinity_key=args.affinity_key,
        client_region=args.client_region,
        full_precision=args.full_precision,
        model=args.model,
    )
    prompt, messages = (args.prompt, None) if args.raw else (None, [{"role": "user", "content": args.prompt}])
    with HybridClient(args.target, timeout_s=args.timeout, application=args.application or None) as client:
        _print_chunks(client.stream(prompt, messages, **params), args.json)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """The embedded default on one machine: edge agent, cloud tier on local Ray, router; static discovery or Consul."""
    import signal
    import threading

    from edge_agent.artifacts.export import export_artifact
    from edge_agent.config import EdgeAgentConfig
    from edge_agent.server import BackgroundEdgeAgent
    from hybrid.client import HybridClient
    from hybrid.router.server import BackgroundRouter, RouterConfig

    console = _console()
    state = Path(args.state_dir)
    artifact = state / "artifact"
    if not (artifact / "manifest.json").is_file():
        with console.status("building the edge artifact (first run only)") as status:
            export_artifact(out=artifact, progress=lambda m: (status.update(m), console.log(m)))
    # DESIGN "Command line": Consul when CONSUL_HTTP_ADDR is set, else the static file.
    discovery = "consul" if os.environ.get("CONSUL_HTTP_ADDR") else f"static:{state / 'discovery.yaml'}"
    stoppers: list = []
    try:
        with console.status("starting the edge agent"):
            edge = BackgroundEdgeAgent(
                EdgeAgentConfig(
                    artifact=artifact, host=args.host, port=args.edge_port, region=args.region, discovery=discovery
                )
            )
        stoppers.append(edge.stop)
        console.print(f"[bold green]edge agent[/]    {edge.address}  ({edge.agent.manifest.precision})")
        if not args.no_cloud:
            tiers = _start_cloud_tiers(args, discovery, console)
            stoppers.append(lambda: _stop_cloud_tiers(tiers))
        with console.status("starting the router"):
            router = BackgroundRouter(
                RouterConfig(host=args.host, port=args.router_port, discovery=discovery, http_port=args.http_port)
            )
        stoppers.append(router.stop)
        console.print(f"[bold green]router[/]        {router.address}  (OpenAI front http://{router.http_address}/v1)")
        console.print(f"[bold green]discovery[/]     {discovery}")
        console.print(f'try: hybrid generate "Hello" --target {router.address} --priority realtime')
        print(f"stack ready on {router.address}", flush=True)
        if args.prompt:
            with HybridClient(router.address, timeout_s=600) as client:
                _print_chunks(
                    client.stream(
                        messages=[{"role": "user", "content": args.prompt}],
                        max_new_tokens=args.max_new_tokens,
                        priority=args.priority,
                    ),
                    False,
                )
        if not args.once:
            stop = threading.Event()
            # Installed explicitly: a shell that starts us in the background leaves SIGINT ignored.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            console.print("serving; Ctrl-C stops everything")
            stop.wait()
    finally:
        console.print("stopping")
        for stopper in reversed(stoppers):
            stopper()
    return 0


def _start_cloud_tiers(args: argparse.Namespace, discovery: str, console) -> list:
    from cloud.config import DeploymentSettings, ReplicaSettings
    from cloud.server import CloudTier, free_port

    tiers = []
    port = args.cloud_port or free_port()  # one Serve proxy for both applications
    with console.status("starting the cloud tier on local Ray: private and public (first start ~30 s)"):
        for kind in ("private", "public"):
            tier = CloudTier(
                ReplicaSettings(tier=kind, region=args.region),
                # No CPU reservation: on a small machine both replicas share the cores with the edge agent.
                DeploymentSettings(num_cpus=0),
                port=port,
                discovery=discovery,
                app_name=kind,
            )
            tier.start()
            tiers.append(tier)
            console.print(f"[bold green]cloud {kind:<7}[/] {tier.address}  (Serve application {kind})")
    return tiers


def _stop_cloud_tiers(tiers: list) -> None:
    from cloud.server import shutdown_serve

    for tier in tiers:
        tier.stop()
    shutdown_serve()


def _class_mix(text: str) -> dict[str, float]:
    """'REALTIME=0.3,INTERACTIVE=0.5,BATCH=0.2' as a dict."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--mix takes CLASS=FRACTION pairs separated by commas, e.g. REALTIME=0.3; got {part!r}")
        mix[name.strip().upper()] = float(value)
    return mix


def cmd_bench_overload(args: argparse.Namespace) -> int:
    """The overload scenario (issue 5): the same burst against round-robin and against the router."""
    import shlex

    import yaml

    from hybrid.bench.overload import OverloadConfig, run_overload
    from hybrid.bench.report import markdown
    from hybrid.bench.workload import WorkloadConfig

    console = _console()
    fields = yaml.safe_load(Path(args.workload).read_text()) if args.workload else {}
    if args.steady_rps is not None:
        fields["steady_rps"] = args.steady_rps
    if args.burst_x is not None:
        fields["burst_multiplier"] = args.burst_x
    if args.seconds is not None:
        # The whole run in three equal phases: steady, burst, steady again.
        fields.update(steady_s=args.seconds / 3, burst_s=args.seconds / 3, recovery_s=args.seconds / 3)
    for name in ("steady_s", "burst_s", "recovery_s", "seed"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.mix:
        fields["class_mix"] = _class_mix(args.mix)
    if args.max_new_tokens is not None:
        low = min(WorkloadConfig.model_fields["max_new_tokens"].default[0], args.max_new_tokens)
        fields["max_new_tokens"] = (low, args.max_new_tokens)
    config = OverloadConfig(
        workload=WorkloadConfig(**fields),
        out=Path(args.out),
        configurations=args.only or ["baseline", "router"],
        artifact=Path(args.artifact) if args.artifact else None,
        edge_agents=args.edge_agents,
        edge_threads=args.edge_threads,
        edge_max_batch_size=args.edge_max_batch_size,
        cloud=not args.no_cloud,
        cloud_port=args.cloud_port,
        cloud_model=args.cloud_model,
        cloud_random_weights=args.cloud_random_weights,
        cloud_num_gpus=args.cloud_num_gpus,
        ray_cpus=args.ray_cpus,
        cooldown_s=args.cooldown_s,
        plots=not args.no_plots,
    )
    # The command line, for the report, when this process is the `hybrid` command (not a test calling main()).
    command = shlex.join(["hybrid", *sys.argv[1:]]) if Path(sys.argv[0]).name in ("hybrid", "cli.py") else ""
    report = run_overload(config, say=console.log, command=command)
    console.print(markdown(report), markup=False, highlight=False)
    print(config.out / "report.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybrid", description="Edge-and-cloud LLM inference.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    from edge_agent.artifacts.export import PRECISION_CHOICES

    export = commands.add_parser("export", help="build a quality-gated edge artifact")
    export.add_argument("--model", default=constants.DEFAULT_MODEL, help="model name or local Hugging Face folder")
    export.add_argument(
        "--precision", default="auto", choices=PRECISION_CHOICES, help="auto picks the fastest that passes the gate"
    )
    export.add_argument("--out", help="folder to place the artifact in (it is also cached by content hash)")
    export.add_argument(
        "--force", action="store_true", help="ship a precision that fails the quality gate, labelled so"
    )
    export.set_defaults(func=cmd_export)

    artifacts = commands.add_parser("artifacts", help="serve edge artifacts to nodes").add_subparsers(
        dest="artifacts_command", required=True
    )
    artifacts_serve = artifacts.add_parser(
        "serve", help="serve edge artifacts over HTTP at /artifacts/<manifest sha256> (what hybrid-edge fetches)"
    )
    artifacts_serve.add_argument("dir", help="an artifact folder, or a folder of them")
    artifacts_serve.add_argument("--host", default=constants.DEFAULT_HOST, help="0.0.0.0 serves other machines")
    artifacts_serve.add_argument("--port", type=int, default=constants.DEFAULT_ARTIFACT_PORT, help="0 picks one")
    artifacts_serve.set_defaults(func=cmd_artifacts_serve)
    artifacts_hash = artifacts.add_parser(
        "hash", help="verify an artifact and print its manifest's sha256, the hash nodes pin with --sha256"
    )
    artifacts_hash.add_argument("dir", help="the artifact folder")
    artifacts_hash.set_defaults(func=cmd_artifacts_hash)

    edge = commands.add_parser("edge", help="edge agent").add_subparsers(dest="edge_command", required=True)
    serve = edge.add_parser("serve", help="run an edge agent")
    serve.add_argument("--artifact", required=True, help="artifact folder from `hybrid export`")
    serve.add_argument("--host", default=constants.DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=constants.DEFAULT_EDGE_PORT)
    serve.add_argument("--region", default=constants.DEFAULT_REGION)
    serve.add_argument("--zone", default="")
    serve.add_argument("--replica-id", default="")
    serve.add_argument("--max-batch-size", type=int, default=constants.MAX_BATCH_SIZE)
    serve.add_argument("--max-wait-ms", type=float, default=constants.MAX_BATCH_WAIT_MS)
    serve.add_argument("--max-queued", type=int, default=constants.MAX_QUEUED_REQUESTS)
    serve.add_argument("--metrics-port", type=int, default=None)
    serve.add_argument(
        "--discovery",
        default=f"static:{constants.DEFAULT_STATIC_DISCOVERY_FILE}",
        help="static:FILE, consul (CONSUL_HTTP_ADDR or the local agent), consul:HOST:PORT or none",
    )
    serve.add_argument("--cost-per-hour", type=float, default=0.0)
    serve.set_defaults(func=cmd_edge_serve)

    cloud = commands.add_parser("cloud", help="cloud tier on Ray Serve").add_subparsers(
        dest="cloud_command", required=True
    )
    cloud_serve = cloud.add_parser("serve", help="run the cloud tier on this machine's Ray (GPU when present)")
    cloud_config = cloud.add_parser("config", help="write the Serve config file for `serve deploy` / KubeRay")
    for sub in (cloud_serve, cloud_config):
        sub.add_argument("--port", type=int, default=constants.DEFAULT_CLOUD_GRPC_PORT, help="gRPC proxy port")
        sub.add_argument("--tier", default="private", choices=["private", "public"])
        sub.add_argument("--region", default=constants.DEFAULT_REGION)
        sub.add_argument("--zone", default="")
        sub.add_argument("--model", default=constants.DEFAULT_MODEL, help="model name or local Hugging Face folder")
        sub.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
        sub.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
        sub.add_argument("--max-batch-size", type=int, default=constants.MAX_BATCH_SIZE)
        sub.add_argument("--max-wait-ms", type=float, default=constants.MAX_BATCH_WAIT_MS)
        sub.add_argument("--max-queued", type=int, default=constants.MAX_QUEUED_REQUESTS, help="per replica")
        sub.add_argument("--min-replicas", type=int, default=1)
        sub.add_argument("--max-replicas", type=int, default=1)
        sub.add_argument("--target-ongoing-requests", type=float, default=0, help="0: half the batch size")
        sub.add_argument("--max-ongoing-requests", type=int, default=0, help="0: the batch size")
        sub.add_argument(
            "--serve-max-queued",
            type=int,
            default=constants.CLOUD_SERVE_MAX_QUEUED_REQUESTS,
            help="requests Serve queues before backpressure",
        )
        sub.add_argument("--num-gpus", type=float, default=None, help="per replica; default: 1 where Ray sees GPUs")
        sub.add_argument("--num-cpus", type=float, default=1, help="per replica")
        sub.add_argument("--app-name", default="", help="Serve application name; default: the tier")
    cloud_serve.add_argument(
        "--discovery",
        default=f"static:{constants.DEFAULT_STATIC_DISCOVERY_FILE}",
        help="static:FILE, consul (CONSUL_HTTP_ADDR or the local agent), consul:HOST:PORT or none",
    )
    cloud_serve.add_argument("--cost-per-hour", type=float, default=0.0, help="per replica")
    cloud_serve.add_argument("--advertise-host", default=constants.DEFAULT_HOST, help="address others reach it at")
    cloud_serve.add_argument("--ray-cpus", type=int, default=None, help="CPUs of a local Ray cluster started here")
    cloud_serve.set_defaults(func=cmd_cloud_serve)
    cloud_config.add_argument("--out", default="", help="file to write; stdout when empty")
    cloud_config.set_defaults(func=cmd_cloud_config)

    router = commands.add_parser("router", help="the router").add_subparsers(dest="router_command", required=True)
    router_serve = router.add_parser("serve", help="run the router")
    router_serve.add_argument("--host", default=constants.DEFAULT_HOST)
    router_serve.add_argument("--port", type=int, default=constants.DEFAULT_ROUTER_PORT)
    router_serve.add_argument(
        "--discovery",
        default=f"static:{constants.DEFAULT_STATIC_DISCOVERY_FILE}",
        help="static:FILE, consul (CONSUL_HTTP_ADDR or the local agent) or consul:HOST:PORT",
    )
    router_serve.add_argument(
        "--http-port", type=int, default=None, help="serve the OpenAI-compatible HTTP front on this port"
    )
    router_serve.add_argument("--metrics-port", type=int, default=None)
    router_serve.add_argument(
        "--realtime-ttft-ms",
        type=float,
        default=router_defaults.ROUTING_REALTIME_TTFT_MS,
        help="first-token target of REALTIME requests: the nearest tier expected to meet it serves them",
    )
    router_serve.set_defaults(func=cmd_router_serve)

    explain = commands.add_parser("explain", help="print the router's decision for a request, and why")
    explain.add_argument("prompt")
    explain.add_argument("--target", default=f"{constants.DEFAULT_HOST}:{constants.DEFAULT_ROUTER_PORT}")
    explain.add_argument("--priority", default="interactive", choices=["realtime", "interactive", "batch"])
    explain.add_argument("--affinity-key", default="")
    explain.add_argument("--full-precision", action="store_true")
    explain.add_argument("--raw", action="store_true", help="send the text as a raw prompt, not as a chat message")
    explain.add_argument("--json", action="store_true")
    explain.add_argument("--timeout", type=float, default=10.0)
    explain.set_defaults(func=cmd_explain)

    generate = commands.add_parser("generate", help="stream an answer")
    generate.add_argument("prompt")
    generate.add_argument(
        "--target", default=f"{constants.DEFAULT_HOST}:{constants.DEFAULT_EDGE_PORT}", help="HOST:PORT"
    )
    generate.add_argument("--priority", default="interactive", choices=["realtime", "interactive", "batch"])
    generate.add_argument("--max-new-tokens", type=int, default=0, help=f"0 means {constants.DEFAULT_MAX_NEW_TOKENS}")
    generate.add_argument("--temperature", type=float, default=None)
    generate.add_argument("--top-p", type=float, default=None)
    generate.add_argument("--seed", type=int, default=None)
    generate.add_argument("--stop", action="append", default=[])
    generate.add_argument("--model", default="")
    generate.add_argument("--affinity-key", default="")
    generate.add_argument("--client-region", default="")
    generate.add_argument("--full-precision", action="store_true", help="refuse quantized replicas")
    generate.add_argument("--raw", action="store_true", help="send the text as a raw prompt, not as a chat message")
    generate.add_argument("--json", action="store_true", help="one JSON object per chunk, served_by included")
    generate.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds")
    generate.add_argument("--application", default="", help="Serve application, when the target runs several")
    generate.set_defaults(func=cmd_generate)

    up = commands.add_parser("up", help="run the embedded default stack on this machine")
    up.add_argument("--state-dir", default=str(constants.CACHE_DIR / "up"))
    up.add_argument("--host", default=constants.DEFAULT_HOST)
    up.add_argument("--edge-port", type=int, default=constants.DEFAULT_EDGE_PORT)
    up.add_argument("--router-port", type=int, default=constants.DEFAULT_ROUTER_PORT)
    up.add_argument("--cloud-port", type=int, default=constants.DEFAULT_CLOUD_GRPC_PORT, help="Serve's gRPC proxy")
    up.add_argument("--http-port", type=int, default=constants.DEFAULT_ROUTER_HTTP_PORT, help="OpenAI front")
    up.add_argument("--no-cloud", action="store_true", help="edge agent and router only (no Ray)")
    up.add_argument("--priority", default="interactive", choices=["realtime", "interactive", "batch"])
    up.add_argument("--region", default=constants.DEFAULT_REGION)
    up.add_argument("--prompt", default="", help="once the stack is up, answer this through it")
    up.add_argument("--max-new-tokens", type=int, default=64)
    up.add_argument("--once", action="store_true", help="stop after answering --prompt")
    up.set_defaults(func=cmd_up)

    bench = commands.add_parser("bench", help="load generation and benchmark reports").add_subparsers(
        dest="bench_command", required=True
    )
    overload = bench.add_parser(
        "overload", help="the same burst against plain round-robin and the hybrid router, with a report"
    )
    overload.add_argument("--steady-rps", type=float, default=None, help="requests a second outside the burst")
    overload.add_argument(
        "--burst-x", type=float, default=None, help="the burst's rate as a multiple of the steady one"
    )
    overload.add_argument(
        "--seconds", type=float, default=None, help="whole run, split in thirds: steady, burst, steady"
    )
    overload.add_argument("--steady-s", type=float, default=None, help="steady phase before the burst")
    overload.add_argument("--burst-s", type=float, default=None)
    overload.add_argument("--recovery-s", type=float, default=None, help="steady phase after the burst")
    overload.add_argument("--mix", default="", help="class mix, e.g. REALTIME=0.3,INTERACTIVE=0.5,BATCH=0.2")
    overload.add_argument("--max-new-tokens", type=int, default=None, help="longest answer asked for")
    overload.add_argument("--seed", type=int, default=None)
    overload.add_argument("--workload", default="", help="YAML file of WorkloadConfig fields; flags override it")
    overload.add_argument("--out", default="bench-overload", help="folder for report.json, report.md and the plots")
    overload.add_argument("--only", action="append", choices=["baseline", "router"], help="run only this configuration")
    overload.add_argument("--artifact", default="", help="edge artifact folder; default: the int8 one, built once")
    overload.add_argument("--edge-agents", type=int, default=1)
    overload.add_argument("--edge-threads", type=int, default=0, help="ONNX Runtime threads per agent; 0: all cores")
    overload.add_argument(
        "--edge-max-batch-size",
        type=int,
        default=constants.MAX_BATCH_SIZE,
        help="sequences an edge agent decodes at once: its capacity as discovery lists it",
    )
    overload.add_argument(
        "--cloud-model", default=constants.DEFAULT_MODEL, help="the cloud tier's model: a name or a local HF folder"
    )
    overload.add_argument(
        "--cloud-random-weights",
        action="store_true",
        help="random weights of the cloud model's shape (a GPU machine without the weights): real speed, noise answers",
    )
    overload.add_argument(
        "--cloud-num-gpus", type=float, default=None, help="GPUs per cloud replica; default: the two tiers share them"
    )
    overload.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray cluster started here")
    overload.add_argument("--no-cloud", action="store_true", help="edge agents only (no Ray)")
    overload.add_argument("--cloud-port", type=int, default=0, help="Serve's gRPC proxy port; 0 picks one")
    overload.add_argument("--cooldown-s", type=float, default=constants.BENCH_COOLDOWN_S)
    overload.add_argument("--no-plots", action="store_true")
    overload.set_defaults(func=cmd_bench_overload)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("CHECKPOINT_DISABLE", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    from hybrid.client import RequestFailed

    try:
        return args.func(args)
    except RequestFailed as failure:
        hint = f" (retry after {failure.retry_after_ms} ms)" if failure.retry_after_ms else ""
        print(f"error: {failure.code.name}: {failure.details}{hint}", file=sys.stderr)
        return 1
    except (HybridError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
