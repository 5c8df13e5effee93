"""
C{python -m bench.drain}: how fast a drain moves objects (s3balance.ops.drain).

Starts s3balance (SQLite, one process) over the two shared SeaweedFS servers
of the test harness, PUTs C{--objects} objects of C{--size} bytes (round-robin:
half land on b1), drains b1 with no rate limit (or C{--rate}) through the
admin API and times it from the start call to the state C{done}, then checks
that every object reads back.  Prints the objects and bytes moved, the
elapsed time, MB/s (10^6 bytes per second) and the rate the drain itself
reports (bytes moved over the time spent moving).

    .venv/bin/python -m bench.drain [--objects 200] [--size 1MiB] [--concurrency 2] [--rate 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from s3balance.config.units import parse_rate, parse_size
from tests.daemon import Daemon, backend_entry, base_config, poll
from tests.harness import harness_dir, shared_seaweedfs_pair, unique_bucket_name

TOKEN = "bench-drain-token"
BUCKET = "vb-bench-drain"


def admin(daemon: Daemon, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(
        f"{daemon.endpoint}/admin/{path}", data=data, method=method, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.split("\n\n")[1])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--size", default="1MiB")
    parser.add_argument("--concurrency", type=int, default=2, help="balancer.drain_concurrency (1-4)")
    parser.add_argument("--rate", default="0", help="the drain's rate limit (0: unlimited)")
    args = parser.parse_args()
    size = parse_size(args.size) or 0
    servers = shared_seaweedfs_pair()
    real = [unique_bucket_name("bench"), unique_bucket_name("bench")]
    for server, bucket in zip(servers, real, strict=True):
        server.create_bucket(bucket)
    workdir = Path(harness_dir()) / f"bench-drain-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    config = base_config(
        [backend_entry(server, bucket) for server, bucket in zip(servers, real, strict=True)],
        [BUCKET],
        workdir,
        api={"enabled": True, "token": TOKEN},
        balancer={"drain_concurrency": args.concurrency},
    )
    daemon = Daemon(config, name="bench-drain").start()
    try:
        client = daemon.client()
        block = os.urandom(size)
        digests = {}

        def put(n: int) -> None:
            body = n.to_bytes(8, "big") + block[8:]
            client.put_object(Bucket=BUCKET, Key=f"o/{n:05d}", Body=body)
            digests[f"o/{n:05d}"] = hashlib.md5(body).hexdigest()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(args.objects)))
        began = time.perf_counter()
        admin(daemon, "POST", f"backends/{real[0]}/drain", {"rate": parse_rate(args.rate)})
        drain = poll(
            lambda: (lambda d: d if d["state"] == "done" else None)(admin(daemon, "GET", f"backends/{real[0]}/drain")),
            timeout=3600,
            interval=0.05,
        )
        elapsed = time.perf_counter() - began
        for key, digest in digests.items():
            got = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert hashlib.md5(got).hexdigest() == digest, key
        moved = drain["bytes"]["moved"]
        print(
            f"drained {drain['objects']['moved']} objects, {moved} bytes in {elapsed:.2f} s: "
            f"{moved / elapsed / 1e6:.1f} MB/s from start to done; while moving {drain['rate'] / 1e6:.1f} MB/s "
            f"(concurrency {args.concurrency}, rate limit {drain['rate_limit'] or 'none'})"
        )
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
