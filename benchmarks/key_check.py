"""What checking API keys costs the router per request, in CPU: the whole key path of one request, alone.

Per request the router reads the key from the ``authorization`` value and finds its entry (SHA-256, a dict
lookup, ``hmac.compare_digest``), admits the request (priority, streams, the tokens and requests buckets),
charges each chunk's tokens to the key's bucket, settles the prompt's count at the end, counts the usage
(Prometheus counters by key name) and frees the stream slot. This runs exactly that — ``KeyGuard`` and
``UsageMeter`` as the data plane calls them — on a key file of ``--keys`` keys, each with every limit set
(so every bucket is consulted), and reports CPU microseconds per request. The same figure end to end is
the difference of ``router CPU ms/request`` with and without ``--keys`` in benchmarks/router_overhead.py.

    python benchmarks/key_check.py --keys 1,1000,100000 --requests 20000 --chunks 16
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def key_file(folder: Path, count: int) -> tuple[Path, list[str]]:
    """A key file of ``count`` keys, written once (digests made here: ``add_key`` rewrites the file per key)."""
    from hybrid.security.keys import KeyEntry, KeyFile, KeyLimits, key_digest, new_key, save_key_file

    keys = [new_key() for _ in range(count)]
    limits = KeyLimits(requests_per_s=1e9, burst=10**9, tokens_per_min=10**12, streams=10**6)
    entries = [
        KeyEntry(name=f"key-{index}", sha256=key_digest(key), priorities=("realtime", "interactive"), limits=limits)
        for index, key in enumerate(keys)
    ]
    path = folder / f"keys-{count}.json"
    save_key_file(path, KeyFile(keys=entries))
    return path, keys


def measure(count: int, requests: int, chunks: int, folder: Path) -> dict:
    from prometheus_client import CollectorRegistry

    from hybrid.client import build_request
    from hybrid.discovery import ReplicaRecord
    from hybrid.protocol import request_from_proto
    from hybrid.router.keyguard import KeyGuard
    from hybrid.router.ledger import OK, Call
    from hybrid.router.policy.replica import ReplicaState
    from hybrid.router.usage import UsageMeter
    from hybrid.security.keys import KeyStore

    path, keys = key_file(folder, count)
    guard = KeyGuard(KeyStore(path))
    meter = UsageMeter(CollectorRegistry())
    record = ReplicaRecord(
        id="r", address="127.0.0.1", port=1, tier="edge", model="m", precision="int8", region="x", capacity=8
    )
    replica = ReplicaState(record)
    request = request_from_proto(build_request("Why is the sky blue?", max_new_tokens=chunks, priority="realtime"))
    headers = [f"Bearer {keys[index % len(keys)]}" for index in range(min(requests, 1000))]
    started = time.process_time()
    for index in range(requests):
        entry = guard.identify(headers[index % len(headers)])
        grant = guard.admit(entry, request)
        call = Call(replica, 0.0, None, chunks, grant=grant)
        for _ in range(chunks):
            call.streamed(1, 0.0)
            guard.chunk(call, 1, 0.0)
        call.reported_usage = (6, chunks)
        guard.ended(call, OK, 0.0)
        meter.ended(call, OK, 0.0)
        grant.release()
    cpu_s = time.process_time() - started
    return {"keys": count, "requests": requests, "chunks": chunks, "cpu_us_per_request": 1e6 * cpu_s / requests}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", default="1,1000,100000", help="key file sizes, comma-separated")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--chunks", type=int, default=16, help="chunks of one token each per answer")
    parser.add_argument("--out", default="key_check.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for count in [int(c) for c in args.keys.split(",")]:
            results.append(measure(count, args.requests, args.chunks, Path(folder)))
            print(json.dumps(results[-1]), flush=True)
    report = {"machine": platform.processor() or platform.machine(), "python": platform.python_version()}
    report |= {"command": " ".join(["python", *sys.argv]), "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
