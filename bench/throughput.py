"""
PUT and GET throughput and latency, direct vs s3balance vs nginx.

A scenario is one operation, one object size and one client count
(C{put4k@8}: 8 clients PUT 4 KiB objects).  It runs in rounds; in each round
every target gets the same load for the same time, in an order that rotates
from round to round, so a slow drift of the machine (another process, page
cache, SeaweedFS compaction) hits all three alike.

4 KiB PUTs write a fresh key per request (the common case: new objects);
64 MiB PUTs overwrite one key per client (so the disk does not fill), which
on s3balance also queues a backend DELETE of the replaced copy.  GETs read
objects written before the rounds start.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from bench.environment import Target, cpu_seconds
from bench.workers import WorkerPool

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Scenario:
    name: str  # put4k, get4k, put64m, get64m
    op: str  # put or get
    size: int
    clients: int
    duration: float
    min_ops: int = 1
    max_ops: int = 10**9

    @property
    def id(self) -> str:
        return f"{self.name}@{self.clients}"

    @property
    def large(self) -> bool:
        return self.size >= MIB


def size_label(size: int) -> str:
    if size % MIB == 0:
        return f"{size // MIB}m"
    if size % KIB == 0:
        return f"{size // KIB}k"
    return str(size)


def scenarios(
    small: int,
    large: int,
    clients: list[int],
    duration: float,
    large_duration: float,
    large_min_ops: int,
    only: Optional[set[str]] = None,
) -> list[Scenario]:
    found = []
    for op in ("put", "get"):
        for size, dur, min_ops in ((small, duration, 1), (large, large_duration, large_min_ops)):
            # The names are the sizes the targets speak of, whatever the size option says.
            name = f"{op}{'64m' if size == large else '4k'}"
            for count in clients:
                scenario = Scenario(name, op, size, count, dur, min_ops)
                if only is None or name in only or scenario.id in only:
                    found.append(scenario)
    return found


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def get_keys(scenario: Scenario, worker: int, per_worker: int) -> list[str]:
    label = size_label(scenario.size)
    count = 1 if scenario.large else per_worker
    return [f"get{label}/w{worker}/{i}" for i in range(count)]


def prepare_gets(pool: WorkerPool, targets: list[Target], scenario: Scenario, per_worker: int) -> None:
    """Write the objects the GET rounds read, for every worker slot, on every target."""
    for target in targets:
        jobs = [
            target.job(op="put", size=scenario.size, keys=get_keys(scenario, w, per_worker),
                       warmup=0, duration=0, min_ops=len(get_keys(scenario, w, per_worker)),
                       max_ops=len(get_keys(scenario, w, per_worker)))
            for w in range(pool.size)
        ]
        results = pool.run(jobs)
        failed = [r for r in results if r.get("error") or r.get("errors")]
        if failed:
            raise RuntimeError(f"preparing {scenario.id} on {target.name}: {failed[0].get('error') or failed[0]['errors']}")


def round_jobs(target: Target, scenario: Scenario, round_no: int, per_worker: int) -> list[dict]:
    jobs = []
    label = size_label(scenario.size)
    for w in range(scenario.clients):
        values: dict[str, Any] = {
            "op": scenario.op,
            "size": scenario.size,
            "duration": scenario.duration,
            "min_ops": scenario.min_ops,
            "max_ops": scenario.max_ops,
            "warmup": 0 if scenario.large else 2,
        }
        if scenario.op == "get":
            values["keys"] = get_keys(scenario, w, per_worker)
            values["warmup"] = 1 if not scenario.large else 0
        elif scenario.large:
            values["keys"] = [f"put{label}/w{w}"]
        else:
            values["key_prefix"] = f"put{label}/c{scenario.clients}/r{round_no}/w{w}/"
        jobs.append(target.job(**values))
    return jobs


def measure_round(pool: WorkerPool, target: Target, scenario: Scenario, round_no: int, per_worker: int) -> dict:
    """One round of one scenario on one target."""
    jobs = round_jobs(target, scenario, round_no, per_worker)
    proxy_pids, backend_pids = target.proxy_pids(), target.backend_pids()
    # CPU counters are read when every client has warmed up, just before the common start.
    sampled: dict[str, float] = {}

    def on_start(start_at: float) -> None:
        sampled["start_at"] = start_at
        sampled["proxy"] = cpu_seconds(proxy_pids)
        sampled["backend"] = cpu_seconds(backend_pids)

    results = pool.run(jobs, on_start=on_start)
    proxy_cpu = cpu_seconds(proxy_pids)
    backend_cpu = cpu_seconds(backend_pids)
    start_at = sampled["start_at"]
    errors = [e for r in results for e in ([r["error"]] if r.get("error") else []) + r.get("errors", [])]
    ops = sum(r["ops"] for r in results)
    nbytes = sum(r.get("bytes", 0) for r in results)
    ended = max((r.get("ended", start_at) for r in results), default=start_at)
    wall = max(1e-9, ended - start_at)
    latencies = [x for r in results for x in r["latencies"]]
    return {
        "target": target.name,
        "round": round_no,
        "ops": ops,
        "bytes": nbytes,
        "wall": wall,
        "ops_per_s": ops / wall,
        "mb_per_s": nbytes / wall / 1e6,
        "latencies": latencies,
        "client_cpu": sum(r.get("cpu", 0.0) for r in results),
        "proxy_cpu": proxy_cpu - sampled.get("proxy", proxy_cpu),
        "backend_cpu": backend_cpu - sampled.get("backend", backend_cpu),
        "errors": errors,
    }


def summarize(scenario: Scenario, rounds: list[dict]) -> dict:
    """Median over rounds of the rates; latency percentiles over all requests of all rounds."""
    latencies = [x for r in rounds for x in r["latencies"]]
    ops = sum(r["ops"] for r in rounds)
    wall = sum(r["wall"] for r in rounds)
    per_op = lambda total: (total / ops * 1e6) if ops else float("nan")  # noqa: E731
    return {
        "ops": ops,
        "ops_per_s": statistics.median(r["ops_per_s"] for r in rounds),
        "ops_per_s_rounds": [round(r["ops_per_s"], 1) for r in rounds],
        "mb_per_s": statistics.median(r["mb_per_s"] for r in rounds),
        "mb_per_s_rounds": [round(r["mb_per_s"], 1) for r in rounds],
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "client_cpu_cores": sum(r["client_cpu"] for r in rounds) / wall if wall else 0.0,
        "client_cpu_us_per_op": per_op(sum(r["client_cpu"] for r in rounds)),
        "proxy_cpu_us_per_op": per_op(sum(r["proxy_cpu"] for r in rounds)),
        "backend_cpu_us_per_op": per_op(sum(r["backend_cpu"] for r in rounds)),
        "proxy_cpu_cores": sum(r["proxy_cpu"] for r in rounds) / wall if wall else 0.0,
        "errors": [e for r in rounds for e in r["errors"]][:5],
        "error_count": sum(len(r["errors"]) for r in rounds),
    }


def run(
    pool: WorkerPool,
    targets: list[Target],
    selected: list[Scenario],
    rounds: int,
    per_worker: int = 50,
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    """-> {scenario id: {"scenario": ..., "targets": {name: summary}}}."""
    results: dict[str, dict] = {}
    prepared: set[tuple[str, int]] = set()
    for scenario in selected:
        present = [t for t in targets if not (scenario.large and t.small_only)]
        if scenario.op == "get" and (scenario.name, scenario.size) not in prepared:
            log(f"  preparing objects for {scenario.name} ...")
            prepare_gets(pool, present, scenario, per_worker)
            prepared.add((scenario.name, scenario.size))
        by_target: dict[str, list[dict]] = {t.name: [] for t in present}
        for round_no in range(rounds):
            shift = round_no % len(present)
            for target in present[shift:] + present[:shift]:
                measured = measure_round(pool, target, scenario, round_no, per_worker)
                by_target[target.name].append(measured)
                unit = (
                    f"{measured['mb_per_s']:.0f} MB/s" if scenario.large else f"{measured['ops_per_s']:.0f} ops/s"
                )
                errors = f"  ({len(measured['errors'])} errors: {measured['errors'][0]})" if measured["errors"] else ""
                log(f"  {scenario.id:<10} round {round_no + 1}/{rounds} {target.name:<9} {unit}{errors}")
        results[scenario.id] = {
            "scenario": {
                "name": scenario.name,
                "op": scenario.op,
                "size": scenario.size,
                "clients": scenario.clients,
                "duration": scenario.duration,
                "large": scenario.large,
            },
            "targets": {name: summarize(scenario, measured) for name, measured in by_target.items()},
        }
    return results
