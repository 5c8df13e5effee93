"""
Where a single client's added latency goes (4 KiB PUT and GET, one client).

The target "added p50 over direct <= 1 ms" compares a client that talks to
the backend back to back with one that talks through the daemon.  This
section splits that difference (means, in ms) into:

  - backend idle: the backend answers more slowly when it is not hit back to
    back.  Measured directly: the same requests to the backend, with the
    client idle between them as long as the daemon adds (SeaweedFS's
    goroutines and the idle cores need waking; nginx, which adds ~0.1 ms,
    barely pays it).
  - backend leg: the daemon's own view of its backend request (from handing
    it to its HTTP client to the response head;
    C{s3balance_backend_request_duration_seconds}) less the idle backend's
    round trip seen by a plain client.
  - daemon: from the request head to the end of the answer
    (C{s3balance_request_duration_seconds}) outside the backend leg: SigV4,
    routing, placement, the database (a PUT: the write intent and the
    durable commit), the answer.
  - outside: what the client waits for that none of the daemon's timers
    covers (reading the request head, writing the answer, wake-ups).

Run with C{python -m bench --only latency}; part of the default run.
"""

from __future__ import annotations

import statistics
import time
import urllib.request
from collections.abc import Callable

from bench.environment import Target
from bench.sigv4client import S3Client

PHASES = ("direct", "s3balance", "direct+idle")


def _scrape(endpoint: str) -> dict[tuple[str, str], float]:
    """The daemon's request and backend-request histograms: {(sample name, label): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(endpoint.rstrip("/") + "/metrics", timeout=30).read().decode()
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("s3balance_request_duration_seconds", "s3balance_backend_request_duration_seconds"):
            continue
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                label = sample.labels.get("operation") or sample.labels.get("method") or ""
                values[(sample.name, label)] = values.get((sample.name, label), 0.0) + sample.value
    return values


def _mean_ms(before: dict, after: dict, family: str, label: str) -> float | None:
    count = after.get((f"{family}_count", label), 0.0) - before.get((f"{family}_count", label), 0.0)
    total = after.get((f"{family}_sum", label), 0.0) - before.get((f"{family}_sum", label), 0.0)
    return total / count * 1e3 if count else None


def _timed(calls: list[Callable[[], object]], idle: float = 0.0) -> list[float]:
    latencies = []
    for call in calls:
        if idle:
            time.sleep(idle)
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return latencies


def _phase_calls(client: S3Client, target: Target, op: str, keys: list[str], body: bytes) -> list[Callable[[], object]]:
    if op == "put":
        return [lambda key=key: client.put(target.bucket, key, body) for key in keys]
    return [lambda key=key: client.get(target.bucket, key, len(body)) for key in keys]


def run(
    direct: Target,
    balancer: Target,
    size: int,
    requests: int = 500,
    rounds: int = 2,
    log: Callable[[str], None] = print,
) -> dict:
    """-> {"put": {...}, "get": {...}}: means over C{rounds} rounds of C{requests} each."""
    body = b"\x5a" * size
    clients = {direct.name: direct.client(), balancer.name: balancer.client()}

    def calls(target: Target, op: str, keys: list[str]) -> list[Callable[[], object]]:
        return _phase_calls(clients[target.name], target, op, keys, body)

    results: dict = {}
    for op, operation, method in (("put", "PutObject", "PUT"), ("get", "GetObject", "GET")):
        per_round: list[dict] = []
        for round_no in range(rounds):
            keys = [f"latency/{size}/r{round_no}/{i}" for i in range(requests)]
            figures: dict[str, float] = {}
            # Warm both paths (connections, caches) before timing.
            warm = [f"latency/warm/{i}" for i in range(20)]
            for target in (direct, balancer):
                _timed(calls(target, "put", warm))
                if op == "get":
                    _timed(calls(target, "put", keys))
            plain = _timed(calls(direct, op, keys))
            before = _scrape(balancer.endpoint)
            through = _timed(calls(balancer, op, keys))
            after = _scrape(balancer.endpoint)
            figures["direct_ms"] = statistics.fmean(plain) * 1e3
            figures["direct_p50_ms"] = statistics.median(plain) * 1e3
            figures["s3balance_ms"] = statistics.fmean(through) * 1e3
            figures["s3balance_p50_ms"] = statistics.median(through) * 1e3
            added = max(0.0, figures["s3balance_ms"] - figures["direct_ms"])
            # (Fresh keys for PUTs: an overwrite may cost the backend more.)
            again = [f"{key}/idle" for key in keys] if op == "put" else keys
            idle = _timed(calls(direct, op, again), idle=added / 1e3)
            figures["direct_idle_ms"] = statistics.fmean(idle) * 1e3
            figures["request_ms"] = _mean_ms(before, after, "s3balance_request_duration_seconds", operation) or 0.0
            figures["backend_ms"] = (
                _mean_ms(before, after, "s3balance_backend_request_duration_seconds", method) or 0.0
            )
            per_round.append(figures)
            log(f"  latency {op}4k round {round_no + 1}/{rounds}: direct {figures['direct_ms']:.2f} ms, "
                f"s3balance {figures['s3balance_ms']:.2f}, direct with idle gaps {figures['direct_idle_ms']:.2f}")
        mean = {name: statistics.fmean(r[name] for r in per_round) for name in per_round[0]}
        mean["added_ms"] = mean["s3balance_ms"] - mean["direct_ms"]
        mean["parts_ms"] = {
            "backend idle": mean["direct_idle_ms"] - mean["direct_ms"],
            "backend leg": mean["backend_ms"] - mean["direct_idle_ms"],
            "daemon": mean["request_ms"] - mean["backend_ms"],
            "outside": mean["s3balance_ms"] - mean["request_ms"],
        }
        mean["requests"] = requests * rounds
        results[op] = mean
    for client in clients.values():
        client.close()
    return results


def print_latency(results: dict, size: int, out: Callable[[str], None] = print) -> None:
    out(f"\nWhere a 1-client request's added latency goes ({size // 1024} KiB; means in ms; bench/latency.py)")
    for op, figures in results.items():
        parts = ", ".join(f"{name} {value:+.2f}" for name, value in figures["parts_ms"].items())
        out(f"  {op.upper():3} direct {figures['direct_ms']:.2f} (p50 {figures['direct_p50_ms']:.2f}), "
            f"s3balance {figures['s3balance_ms']:.2f} (p50 {figures['s3balance_p50_ms']:.2f}): "
            f"added {figures['added_ms']:+.2f} = {parts}")
