"""
The same operations with a real SDK: boto3, one client, its default
settings (checksums as botocore computes them by default; over plain HTTP
botocore signs the payload hash, so it reads the body twice).  This measures
what an application sees, client overhead included, so it is reported apart
from the lightweight-client numbers.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from bench.environment import Target
from bench.sigv4client import data_block
from bench.throughput import percentile

MIB = 1024 * 1024


def _client(target: Target):
    from tests.harness import boto3_client

    return boto3_client(target.endpoint, target.access_key, target.secret_key)


def _small(client, bucket: str, size: int, duration: float, prefix: str) -> dict:
    """PUTs for C{duration} seconds (200 keys, cycled), then GETs of those keys as long."""
    body = data_block()[:size]
    client.put_object(Bucket=bucket, Key=prefix + "warm", Body=body)
    client.get_object(Bucket=bucket, Key=prefix + "warm")["Body"].read()
    out = {}
    written = 0
    for op in ("put", "get"):
        latencies = []
        started = time.monotonic()
        deadline = started + duration
        n = 0
        while n < 1 or time.monotonic() < deadline:
            t0 = time.perf_counter()
            if op == "put":
                client.put_object(Bucket=bucket, Key=f"{prefix}{n % 200}", Body=body)
            else:
                client.get_object(Bucket=bucket, Key=f"{prefix}{n % written}")["Body"].read()
            latencies.append(time.perf_counter() - t0)
            n += 1
        if op == "put":
            written = min(200, n)
        out[op] = {
            "ops_per_s": n / (time.monotonic() - started),
            "p50_ms": percentile(latencies, 0.5) * 1e3,
            "p99_ms": percentile(latencies, 0.99) * 1e3,
        }
    return out


class _Stream:
    """A file-like body of C{size} bytes from the flat block, seekable for botocore's retries/hashing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self.block = data_block()

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.size:
            return b""
        if n is None or n < 0:
            n = self.size - self.pos
        n = min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            offset = (self.pos + len(out)) % len(self.block)
            out += self.block[offset : offset + n - len(out)]
        self.pos += n
        return bytes(out)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else (self.pos + offset if whence == 1 else self.size + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def __len__(self) -> int:
        return self.size


def _large(client, bucket: str, size: int, key: str) -> dict:
    t0 = time.perf_counter()
    client.put_object(Bucket=bucket, Key=key, Body=_Stream(size), ContentLength=size)
    put = time.perf_counter() - t0
    t0 = time.perf_counter()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    got = 0
    for chunk in body.iter_chunks(MIB):
        got += len(chunk)
    get = time.perf_counter() - t0
    if got != size:
        raise RuntimeError(f"boto3 GET {key}: {got} of {size} bytes")
    return {"put": {"mb_per_s": size / put / 1e6}, "get": {"mb_per_s": size / get / 1e6}}


def run(
    targets: list[Target],
    rounds: int,
    small: int,
    large: int,
    duration: float,
    log: Callable[[str], None] = print,
) -> dict:
    per_target: dict[str, list[dict]] = {t.name: [] for t in targets}
    clients = {t.name: _client(t) for t in targets}
    for round_no in range(rounds):
        shift = round_no % len(targets)
        for target in targets[shift:] + targets[:shift]:
            client = clients[target.name]
            measured = {"small": _small(client, target.bucket, small, duration, f"sdk/r{round_no}/"),
                        "large": _large(client, target.bucket, large, "sdk/large")}
            per_target[target.name].append(measured)
            log(
                f"  boto3 round {round_no + 1}/{rounds} {target.name:<9} "
                f"put4k {measured['small']['put']['ops_per_s']:.0f}/s get4k {measured['small']['get']['ops_per_s']:.0f}/s "
                f"put64m {measured['large']['put']['mb_per_s']:.0f} MB/s get64m {measured['large']['get']['mb_per_s']:.0f} MB/s"
            )
    out: dict = {}
    for name, rounds_measured in per_target.items():
        out[name] = {
            "put4k_ops_per_s": statistics.median(m["small"]["put"]["ops_per_s"] for m in rounds_measured),
            "put4k_p50_ms": statistics.median(m["small"]["put"]["p50_ms"] for m in rounds_measured),
            "get4k_ops_per_s": statistics.median(m["small"]["get"]["ops_per_s"] for m in rounds_measured),
            "get4k_p50_ms": statistics.median(m["small"]["get"]["p50_ms"] for m in rounds_measured),
            "put64m_mb_per_s": statistics.median(m["large"]["put"]["mb_per_s"] for m in rounds_measured),
            "get64m_mb_per_s": statistics.median(m["large"]["get"]["mb_per_s"] for m in rounds_measured),
        }
    return out
