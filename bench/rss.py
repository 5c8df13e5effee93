"""
Memory of the daemon under big streaming transfers: 8 clients each PUT
C{size} bytes (1 GiB by default) through s3balance and then GET them back,
all at once, from a flat data generator (the clients hold 1 MiB each), while
VmRSS of the daemon process is sampled every 100 ms from /proc.

A daemon that buffered bodies would grow by the object size per client; one
that streams with backpressure stays near its idle size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bench.environment import Target, rss_kib
from bench.workers import WorkerPool

INTERVAL = 0.1


class RSSSampler:
    def __init__(self, pid: int, interval: float = INTERVAL) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (seconds since start, KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                current, _ = rss_kib(self.pid)
            except OSError:
                return
            self.samples.append((time.monotonic() - self._t0, current))
            self._stop.wait(self.interval)

    def start(self) -> RSSSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(pool: WorkerPool, target: Target, clients: int, size: int, log: Callable[[str], None] = print) -> dict:
    pid = target.proxy_pids()[0]
    idle, _ = rss_kib(pid)
    log(f"  daemon RSS idle: {idle / 1024:.1f} MiB; {clients} clients x {size / 2**20:.0f} MiB PUT then GET ...")
    sampler = RSSSampler(pid).start()
    jobs = [
        target.job(op="putget", size=size, keys=[f"rss/w{w}"], warmup=0, duration=0, min_ops=1, max_ops=1)
        for w in range(clients)
    ]
    started: list[float] = []
    try:
        results = pool.run(jobs, on_start=started.append)
    finally:
        sampler.stop()
    start_at = started[0] if started else time.monotonic()
    _, hwm = rss_kib(pid)
    after, _ = rss_kib(pid)
    errors = [e for r in results for e in ([r["error"]] if r.get("error") else []) + r.get("errors", [])]
    ended = max((r.get("ended", start_at) for r in results), default=start_at)
    moved = sum(r.get("bytes", 0) for r in results)
    peak = max((kib for _, kib in sampler.samples), default=idle)
    # Remove the big objects again (the backend copy goes through the deletion queue).
    client = target.client()
    for w in range(clients):
        try:
            client.delete(target.bucket, f"rss/w{w}")
        except Exception:
            pass
    client.close()
    result = {
        "clients": clients,
        "size": size,
        "idle_mib": idle / 1024,
        "peak_mib": peak / 1024,
        "after_mib": after / 1024,
        "growth_mib": (peak - idle) / 1024,
        "hwm_mib": hwm / 1024,
        "seconds": ended - start_at,
        "mb_per_s": moved / max(1e-9, ended - start_at) / 1e6,
        "samples": len(sampler.samples),
        "series_mib": [(round(t, 1), round(kib / 1024, 1)) for t, kib in sampler.samples[:: max(1, len(sampler.samples) // 200)]],
        "errors": errors[:5],
    }
    log(
        f"  daemon RSS peak {result['peak_mib']:.1f} MiB (idle {result['idle_mib']:.1f}, growth "
        f"{result['growth_mib']:.1f}), {result['mb_per_s']:.0f} MB/s over {result['seconds']:.1f} s"
        + (f"  ERRORS: {errors[0]}" if errors else "")
    )
    return result
