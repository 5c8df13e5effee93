"""
Load-generating clients: a pool of worker processes (or threads), each with
its own keep-alive connection, that run timed jobs together.

A job (a plain dict, so it crosses process boundaries) names an endpoint, an
operation and its keys.  Every worker first warms up (connects, one untimed
request), then waits for the common start time, runs requests back to back
until the common deadline (at least C{min_ops}, at most C{max_ops}) and
reports its request latencies, byte count, errors and its own CPU time over
the measured window.  So all clients load the server over the same window,
and the client's CPU cost is known: when it approaches the machine's cores
the client, not the server, is the limit.

Threads are the default.  They share one GIL, which caps the client at one
core; at about 110 us of client CPU per 4 KiB request that is some 9000
requests/s, well above what the servers here reach, and the report warns
when the client comes near it.  Processes have no such cap, but on a 2-core
machine eight busy client processes get eight shares of the CPU scheduler
against the daemon's one and crowd the servers out: measured, a process
client used more CPU per request and got lower server throughput.
C{mode="process"} is there to compare.
"""

from __future__ import annotations

import multiprocessing
import queue
import resource
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Optional

from bench.sigv4client import FlatBody, S3Client

MAX_ERRORS = 5


def _cpu_process() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_thread() -> float:
    return time.thread_time()


class Job:
    """
    One worker's part of a timed run: L{warm_up} (untimed), then L{measure}
    from the common start time.  Keys of the C{spec} dict:

    endpoint, access_key, secret_key, bucket; op: "put", "get" or "putget"
    (PUT then GET of each key); size; keys: keys to cycle through, or
    key_prefix: a fresh key per request (C{prefix + n}); duration (seconds
    from the start); min_ops; max_ops; warmup (untimed requests first).
    """

    def __init__(self, spec: dict[str, Any], cpu=_cpu_process) -> None:
        self.spec = spec
        self.cpu = cpu
        self.client = S3Client(spec["endpoint"], spec["access_key"], spec["secret_key"])
        self.bucket, self.size, self.op = spec["bucket"], spec["size"], spec["op"]
        self.keys: Optional[list[str]] = spec.get("keys")
        self.prefix: str = spec.get("key_prefix", "")
        self.body = FlatBody(self.size)

    def once(self, n: int) -> None:
        key = self.keys[n % len(self.keys)] if self.keys else f"{self.prefix}{n}"
        client, op = self.client, self.op
        if op == "put":
            client.put(self.bucket, key, self.body)
        elif op == "get":
            client.get(self.bucket, key, expected=self.size)
        elif op == "putget":
            client.put(self.bucket, key, self.body)
            client.get(self.bucket, key, expected=self.size)
        else:
            raise ValueError(op)

    def warm_up(self) -> Optional[str]:
        """Connect and run the untimed requests; -> an error text, or None."""
        try:
            for n in range(self.spec.get("warmup", 1)):
                self.once(-1 - n if self.keys is None else n)
            self.client.connect()
        except Exception as error:
            self.client.close()
            return f"warm-up failed: {type(error).__name__}: {error}"
        return None

    def measure(self, start_at: float) -> dict[str, Any]:
        """Requests back to back from C{start_at} (time.monotonic(), one clock for all processes on Linux)."""
        spec = self.spec
        pause = start_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        deadline = start_at + spec.get("duration", 1.0)
        min_ops, max_ops = spec.get("min_ops", 1), spec.get("max_ops", 10**9)
        latencies: list[float] = []
        errors: list[str] = []
        ops = 0
        cpu0 = self.cpu()
        started = time.monotonic()
        clock = time.perf_counter
        once = self.once
        while ops < max_ops and (ops < min_ops or time.monotonic() < deadline):
            t0 = clock()
            try:
                once(ops)
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}")
                self.client.close()
                ops += 1
                if len(errors) >= MAX_ERRORS:
                    break
                continue
            latencies.append(clock() - t0)
            ops += 1
        ended = time.monotonic()
        cpu_used = self.cpu() - cpu0
        self.client.close()
        done = len(latencies)
        per_op = self.size * (2 if self.op == "putget" else 1)
        return {
            "ops": done,
            "bytes": done * per_op,
            "latencies": latencies,
            "started": started,
            "ended": ended,
            "cpu": cpu_used,
            "errors": errors,
        }


def _failed(text: str) -> dict[str, Any]:
    return {"error": text, "ops": 0, "bytes": 0, "latencies": [], "errors": []}


def _serve(receive, send, cpu) -> None:
    """A worker's loop: job -> warm up -> "ready" -> start time -> measure -> result."""
    while True:
        spec = receive()
        if spec is None:
            return
        try:
            job = Job(spec, cpu)
            error = job.warm_up()
        except Exception:
            job, error = None, traceback.format_exc()
        send(error)
        start_at = receive()
        if job is None or error is not None:
            send(_failed(error or "no job"))
            continue
        try:
            result = job.measure(start_at)
        except Exception:
            result = _failed(traceback.format_exc())
        send(result)


def _process_main(conn) -> None:
    def receive():
        try:
            return conn.recv()
        except EOFError:
            return None

    _serve(receive, conn.send, _cpu_process)


class WorkerPool:
    """C{size} workers; L{run} gives job i to worker i and waits for all."""

    def __init__(self, size: int, mode: str = "process") -> None:
        if mode not in ("process", "thread"):
            raise ValueError(f"mode must be process or thread, not {mode!r}")
        self.size = size
        self.mode = mode
        self._procs: list = []
        self._conns: list = []
        self._threads: list[threading.Thread] = []
        self._inboxes: list[queue.Queue] = []
        self._outboxes: list[queue.Queue] = []
        if mode == "process":
            # spawn, not fork: the parent has threads (samplers, harness).
            context = multiprocessing.get_context("spawn")
            for _ in range(size):
                parent, child = context.Pipe()
                process = context.Process(target=_process_main, args=(child,), daemon=True)
                process.start()
                child.close()
                self._procs.append(process)
                self._conns.append(parent)
        else:
            for _ in range(size):
                inbox: queue.Queue = queue.Queue()
                outbox: queue.Queue = queue.Queue()
                thread = threading.Thread(target=self._thread_main, args=(inbox, outbox), daemon=True)
                thread.start()
                self._threads.append(thread)
                self._inboxes.append(inbox)
                self._outboxes.append(outbox)

    @staticmethod
    def _thread_main(inbox: queue.Queue, outbox: queue.Queue) -> None:
        _serve(inbox.get, outbox.put, _cpu_thread)

    def run(
        self, jobs: list[dict[str, Any]], lead: float = 0.05, on_start: Optional[Callable[[float], None]] = None
    ) -> list[dict[str, Any]]:
        """
        Give job i to worker i; once every worker has warmed up, start them
        all C{lead} seconds later (C{on_start(start_at)} is called first);
        -> their results, in order.
        """
        if len(jobs) > self.size:
            raise ValueError(f"{len(jobs)} jobs for {self.size} workers")
        if self.mode == "process":
            sends = [conn.send for conn in self._conns[: len(jobs)]]
            receives = [conn.recv for conn in self._conns[: len(jobs)]]
        else:
            sends = [inbox.put for inbox in self._inboxes[: len(jobs)]]
            receives = [outbox.get for outbox in self._outboxes[: len(jobs)]]
        for send, job in zip(sends, jobs, strict=True):
            send(job)
        for receive in receives:
            receive()  # ready (or failed: the result says so)
        start_at = time.monotonic() + lead
        if on_start is not None:
            on_start(start_at)
        for send in sends:
            send(start_at)
        return [receive() for receive in receives]

    def close(self) -> None:
        if self.mode == "process":
            for conn in self._conns:
                try:
                    conn.send(None)
                    conn.close()
                except OSError:
                    pass
            for process in self._procs:
                process.join(timeout=5)
                if process.is_alive():
                    process.terminate()
        else:
            for inbox in self._inboxes:
                inbox.put(None)
            for thread in self._threads:
                thread.join(timeout=5)
