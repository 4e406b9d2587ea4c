"""The router's resident memory across rounds of oversized requests, with and without handing freed memory back.

Two processes on loopback: a synthetic replica and the router (static discovery). Each round sends the
router 24 requests whose strings are far over their limits (refused by validation, within the 1 MiB a
server reads) and 6 over 4 MiB (refused by gRPC as they arrive), then idles 1.5 s; the router's RSS is
read from /proc after each round. ``--no-trim`` runs a router whose once-a-second ``malloc_trim`` is
switched off, as the router was before it did that.

    python benchmarks/router_memory.py --rounds 8 [--no-trim]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybrid.router.server import Router  # noqa: E402


class UntrimmedRouter(Router):
    """The router without its malloc_trim (patched in the router's own process, where this is built)."""

    def __init__(self, config):
        import hybrid.router.server

        hybrid.router.server.release_free_memory = lambda: None
        super().__init__(config)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def send_oversized_requests(stub, build_request) -> None:
    """One round of requests whose fields are far over the limits: the router refuses each (INVALID_ARGUMENT, or
    RESOURCE_EXHAUSTED past the message size), and what the round leaves in its memory is what is measured."""
    import grpc

    oversized = [("affinity_key", 900_000)] * 8 + [("request_id", 900_000)] * 8 + [("client_region", 600_000)] * 8
    oversized += [("affinity_key", 4 << 20)] * 6
    for field, size in oversized:
        try:
            list(stub.Generate(build_request("hi", **{field: "k" * size}), timeout=10))
        except grpc.RpcError:
            pass


def main(args: argparse.Namespace) -> None:
    import grpc

    from hybrid.bench.processes import ServerProcess
    from hybrid.bench.synthetic import SyntheticReplica, SyntheticReplicaConfig
    from hybrid.client import build_request
    from hybrid.router.server import RouterConfig
    from hybrid.v1 import inference_pb2_grpc as pb_grpc

    with tempfile.TemporaryDirectory() as folder:
        discovery = f"static:{folder}/discovery.yaml"
        replica = ServerProcess(SyntheticReplica, SyntheticReplicaConfig(replica_id="r", discovery=discovery), "r")
        router_class = UntrimmedRouter if args.no_trim else Router
        # Plaintext on loopback only: the router binds 127.0.0.1 here.
        router = ServerProcess(router_class, RouterConfig(host="127.0.0.1", port=0, discovery=discovery), "router")
        channel = grpc.insecure_channel(router.address, options=[("grpc.max_send_message_length", 8 << 20)])
        stub = pb_grpc.InferenceStub(channel)
        time.sleep(1.5)
        print(f"{'untrimmed' if args.no_trim else 'router'}: start {rss_mb(router.pid):.0f} MB", flush=True)
        for index in range(args.rounds):
            send_oversized_requests(stub, build_request)
            time.sleep(1.5)
            print(f"  after round {index + 1}: {rss_mb(router.pid):.0f} MB", flush=True)
        channel.close()
        router.stop(5)
        replica.stop(5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--no-trim", action="store_true", help="switch the router's malloc_trim off")
    main(parser.parse_args())
