"""
What a GET pays when its object's primary copy is on a dead backend
(section C{failover}).

An object of a bucket with C{replicas: 2} has two locations; a GET reads the
first one whose backend the daemon thinks is up (the primary: the first
location in the database), and when that backend refuses the connection,
errors or has no copy, goes on to the next (s3balance.s3.objects).  Each
failure counts against the backend's health: after
C{balancer.unhealthy_threshold} (default 3) in a row it is marked down and
skipped without being asked, until the health checks see it back.

Setup: the run's SeaweedFS and a second one, each behind a
L{tests.faultproxy.FaultProxy} (with TCP_NODELAY, L{NoDelayProxy}) in a
process of its own (both servers, so both paths have the same extra hop; not
in the client's process, whose GIL it would share), and two daemons over
them, both with C{balancer.replicas: 2} and the same settings (SQLite of
their own, production defaults, round-robin, the run's C{--daemon-config})
but one:

  - I{default}: C{unhealthy_threshold} as configured (default 3);
  - I{never-down}: C{unhealthy_threshold: 1000000}: the dead backend is
    never marked down, so every GET whose primary is on it tries it first:
    the failover itself, measured over many requests (the default daemon
    does this only for its first few GETs).

Each daemon gets C{objects} objects of C{size} bytes.  Round-robin puts
the first copy of every replicated PUT on the same backend (the two copies
move the cycle on by two), so each is followed by a one-copy PUT into
another bucket, which moves it on by one: the primaries alternate between
the servers.  Where each object's primary is comes from the daemon's SQLite
database.  Every phase GETs alternately an object whose primary is on the
server to be killed ("on killed") and one whose primary is on the other
("on other", the control: same daemon, same moment), one client, one
keep-alive connection, timing the response head (TTFB) and the last byte:

  1. default, alive: both servers up;
  2. the killed server's proxy resets every new connection (FaultProxy
     C{refuse}) and the open ones (C{cut});
  3. default, first GETs: GETs of "on killed" objects one at a time while
     its /health still shows that backend up: the real failovers, about
     C{unhealthy_threshold} of them;
  4. default, dead after down: the steady state, the backend skipped;
  5. the server revived; then never-down, in C{rounds} rounds, blocks of
     C{requests / rounds} GETs: alive (both up), dead before down
     (connections reset as in 2), dead with the port closed (the proxy's
     listening socket closed: the kernel refuses the connection,
     ECONNREFUSED), then the port reopened.  Alive and dead blocks so
     alternate in time.

Latencies are of the GETs that answered 200 with the whole object; the
others are counted as errors (before GET failover existed, a primary-dead
GET answered 503 at once).

    python -m bench --only failover
"""

from __future__ import annotations

import http.client
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Optional, cast

from bench.environment import Environment, start_daemon
from bench.replicas import own_database, traceback_notes, two_backend_config
from bench.sigv4client import S3Client, object_path
from bench.throughput import percentile
from tests.daemon import ACCESS_KEY, SECRET_KEY, Daemon
from tests.faultproxy import FaultProxy
from tests.harness import harness_dir

BUCKET = "bench-fo"
PAD_BUCKET = "bench-fo-pad"  # replicas: 1, to move round-robin's cycle on by one
ROOT = Path(__file__).resolve().parent.parent
NEVER_DOWN = 1_000_000
DAEMONS = ("default", "never-down")
DEAD, ALIVE = "on killed", "on other"
FIRST_GETS_MAX = 50  # a backend still up after this many failed GETs: reported, not waited for


class ProxyProcess:
    """
    A L{FaultProxy} to C{127.0.0.1:target_port} in a child process
    (C{python -m bench.failover proxy PORT}), switched by commands on its
    stdin: C{refuse} (reset new connections) and C{accept} (again), C{cut}
    (reset the open ones), C{close} (close the listening socket: connections
    are refused) and C{reopen} (listen on the same port again).
    """

    def __init__(self, target_port: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.failover", "proxy", str(target_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT), env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            self.process.kill()
            raise RuntimeError(f"the fault proxy did not start: {line}")
        self.port = int(line[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, word: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"the fault proxy answered {answer!r} to {word}")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()  # EOF: it exits
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class _NoDelayListener:
    """A listening socket whose accepted connections have TCP_NODELAY set."""

    def __init__(self, server: socket.socket) -> None:
        self._server = server

    def accept(self) -> tuple[socket.socket, Any]:
        client, address = self._server.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class NoDelayProxy(FaultProxy):
    """
    L{FaultProxy} with TCP_NODELAY on both sockets of every link, as the
    daemon and SeaweedFS have on theirs: without it a response relayed in
    two writes waited for the daemon's delayed ACK (40 ms) now and then,
    which is the proxy's latency, not the failover's.
    """

    def start(self) -> NoDelayProxy:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self._listen_port))
        server.listen(128)
        server.settimeout(0.1)
        self._server = cast(socket.socket, _NoDelayListener(server))
        threading.Thread(target=self._accept, daemon=True, name=f"faultproxy-{self.port}").start()
        return self


def _connect_nodelay(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    sock = _create_connection(address, *args, **kwargs)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


_create_connection = socket.create_connection


def _serve_proxy(target_port: int) -> None:
    """The child of L{ProxyProcess}: the proxy, then one command a line until EOF."""
    # FaultProxy connects to its target with socket.create_connection: with TCP_NODELAY, in this process.
    socket.create_connection = _connect_nodelay
    proxy = NoDelayProxy("127.0.0.1", target_port).start()
    port = proxy.port
    print(f"port {port}", flush=True)
    for line in sys.stdin:
        word = line.strip()
        if word == "refuse":
            proxy.refuse = True
        elif word == "accept":
            proxy.refuse = False
        elif word == "cut":
            proxy.cut()
        elif word == "close":
            proxy.close()
        elif word == "reopen":
            proxy = NoDelayProxy("127.0.0.1", target_port, listen_port=port).start()
        else:
            print(f"unknown command {word}", flush=True)
            continue
        print("ok", flush=True)
    proxy.close()


def timed_get(client: S3Client, bucket: str, key: str) -> tuple[int, float, float, int]:
    """
    One GET on C{client}'s keep-alive connection (connected beforehand) ->
    (status, seconds to the response head, seconds to the last byte, bytes).
    """
    path = object_path(bucket, key)
    signed = client.signer.sign("GET", client.host, path)
    lines = [f"GET {path} HTTP/1.1", f"Host: {client.host}", *(f"{k}: {v}" for k, v in signed.items())]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sock = client.connect()
    started = time.perf_counter()
    try:
        sock.sendall(head)
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
        first = time.perf_counter()
        data = response.read()
        ended = time.perf_counter()
    except BaseException:
        client.close()
        raise
    if response.will_close:
        client.close()
    response.close()
    return response.status, first - started, ended - started, len(data)


def primaries(daemon: Daemon, bucket: str) -> dict[str, list[str]]:
    """{key: its locations' backends, in record order (the primary first)} from the daemon's SQLite database."""
    path = daemon.config["database"]["dsn"]
    found: dict[str, list[str]] = {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as connection:
        for key, backend in connection.execute(
            "SELECT o.key, l.backend FROM objects o JOIN object_locations l ON l.object_id = o.id"
            " WHERE o.bucket = ? ORDER BY o.id, l.id",
            (bucket,),
        ):
            found.setdefault(bytes(key).decode() if isinstance(key, (bytes, memoryview)) else key, []).append(backend)
    return found


def summarize(samples: list[tuple[int, float, float, int]], size: int) -> dict[str, Any]:
    """Latency percentiles (ms) of the GETs that answered 200 with C{size} bytes; the others are errors."""
    good = [s for s in samples if s[0] == 200 and s[3] == size]
    total = [s[2] for s in good]
    ttfb = [s[1] for s in good]
    statuses = Counter(str(s[0]) for s in samples)
    return {
        "requests": len(samples),
        "ok": len(good),
        "errors": len(samples) - len(good),
        "statuses": dict(sorted(statuses.items())),
        "p50_ms": percentile(total, 0.5) * 1e3 if total else None,
        "p99_ms": percentile(total, 0.99) * 1e3 if total else None,
        "mean_ms": statistics.fmean(total) * 1e3 if total else None,
        "max_ms": max(total) * 1e3 if total else None,
        "ttfb_p50_ms": percentile(ttfb, 0.5) * 1e3 if ttfb else None,
        "ttfb_p99_ms": percentile(ttfb, 0.99) * 1e3 if ttfb else None,
    }


class _Side:
    """One daemon of the measurement: its client, and its keys by where their primary is."""

    def __init__(self, name: str, daemon: Daemon, real: Sequence[str]) -> None:
        self.name = name
        self.daemon = daemon
        self.real = list(real)
        self.client = S3Client(daemon.endpoint, ACCESS_KEY, SECRET_KEY, timeout=120)
        self.by_primary: dict[int, list[str]] = {0: [], 1: []}
        self.copies: Counter[int] = Counter()

    def classify(self) -> None:
        for key, backends in primaries(self.daemon, BUCKET).items():
            self.copies[len(backends)] += 1
            if backends[0] in self.real:
                self.by_primary[self.real.index(backends[0])].append(key)

    def backend_up(self, index: int) -> bool:
        return bool(self.daemon.health().get("backends", {}).get(self.real[index], {}).get("up"))

    def reconnect(self) -> None:
        self.client.close()
        self.client.connect()

    def phase(self, dead: int, requests: int) -> dict[str, list[tuple[int, float, float, int]]]:
        """C{requests} GETs, alternately of a key whose primary is on server C{dead} and of one whose is not."""
        groups = {DEAD: self.by_primary[dead], ALIVE: self.by_primary[1 - dead]}
        order = [(group, keys) for group, keys in groups.items() if keys]
        samples: dict[str, list[tuple[int, float, float, int]]] = {group: [] for group, _ in order}
        self.reconnect()
        for n in range(requests):
            group, keys = order[n % len(order)]
            samples[group].append(_get(self.client, keys[(n // len(order)) % len(keys)]))
        return samples


def _get(client: S3Client, key: str) -> tuple[int, float, float, int]:
    """L{timed_get} of C{key}; a broken connection is status 0."""
    try:
        return timed_get(client, BUCKET, key)
    except (OSError, http.client.HTTPException):
        return (0, 0.0, 0.0, 0)


def failover_count(daemon: Daemon) -> Optional[float]:
    """The daemon's C{s3balance_get_failovers_total}, all backends and phases (None: no such metric)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(daemon.endpoint + "/metrics", timeout=30).read().decode()
    except OSError:
        return None
    found = None
    for family in text_string_to_metric_families(text):
        if family.name == "s3balance_get_failovers":
            found = sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    return found


def summarize_all(samples: dict[str, list[tuple[int, float, float, int]]], size: int) -> dict[str, dict[str, Any]]:
    return {group: summarize(values, size) for group, values in samples.items()}


def run(
    env: Environment,
    size: int,
    objects: int,
    requests: int,
    rounds: int = 3,
    daemon_overrides: Optional[list[str]] = None,
    twistd_args: str = "",
    log: Callable[[str], None] = print,
) -> dict:
    """
    -> {"size", "requests", "dead_server", "primaries", "copies", "phases": {phase: {daemon: {group: summary}}},
    "first_gets", "added_ms", "failover_works", "failovers" (each daemon's s3balance_get_failovers_total),
    "notes"}.
    """
    servers = env.pair(log)
    proxies: list[ProxyProcess] = []
    sides: list[_Side] = []
    notes: list[str] = []
    results: dict[str, Any] = {
        "size": size, "objects": objects, "requests": requests, "rounds": rounds, "phases": {}, "notes": notes,
    }
    if len(own_database(daemon_overrides)) != len(daemon_overrides or []):
        notes.append("the failover daemons keep their own SQLite databases (the database.* overrides are not for them)")
    try:
        for server in servers:
            proxies.append(ProxyProcess(server.port))
        for name in DAEMONS:
            real = [f"bench-fo-{letter}-{name}" for letter in "ab"]
            for server, bucket in zip(servers, real, strict=True):
                server.create_bucket(bucket)
            workdir = Path(harness_dir()) / f"bench-failover-{name}"
            workdir.mkdir(parents=True, exist_ok=True)
            overrides = list(daemon_overrides or [])
            if name == "never-down":
                overrides.append(f"balancer.unhealthy_threshold={NEVER_DOWN}")
            config = two_backend_config(
                servers, real, workdir, [{"name": BUCKET}, {"name": PAD_BUCKET, "replicas": 1}],
                endpoints=[f"http://{proxy.address}" for proxy in proxies], balancer={"replicas": 2},
                overrides=overrides,
            )
            log(f"starting s3balance ({name}: replicas 2, unhealthy_threshold "
                f"{config['balancer'].get('unhealthy_threshold', 'default')}) behind fault proxies ...")
            sides.append(_Side(name, start_daemon(config, f"bench-failover-{name}", twistd_args), real))
        body = b"\x5a" * size
        log(f"  writing {objects} objects of {size} bytes through each ...")
        for side in sides:
            side.client.put(BUCKET, "warmup", body)
            for i in range(objects):
                side.client.put(BUCKET, f"fo/{i:05d}", body)
                side.client.put(PAD_BUCKET, f"pad/{i:05d}", body)  # the next primary on the other server
            side.classify()
        # The server to kill: the one more objects have their primary on.
        counts = [sum(len(side.by_primary[i]) for side in sides) for i in (0, 1)]
        dead = 0 if counts[0] >= counts[1] else 1
        killed = proxies[dead]
        results["dead_server"] = dead
        results["primaries"] = {side.name: {str(i): len(side.by_primary[i]) for i in (0, 1)} for side in sides}
        results["copies"] = {side.name: {str(k): v for k, v in sorted(side.copies.items())} for side in sides}
        for side in sides:
            if set(side.copies) != {2}:
                notes.append(f"{side.name}: objects with other than 2 copies: {dict(side.copies)}")
            if not side.by_primary[dead]:
                notes.append(f"{side.name}: no object has its primary on the server killed")
        default, never = sides
        for side in sides:
            side.reconnect()
            for key in side.by_primary[0][:10] + side.by_primary[1][:10]:  # warm the daemon's connections to both
                timed_get(side.client, BUCKET, key)

        def record(phase: str, side: _Side, figures: dict, text: str = "") -> None:
            results["phases"].setdefault(phase, {})[side.name] = figures
            log(f"  {phase:<18} {side.name:<10}{text} " + ", ".join(
                f"{group}: p50 {_ms(f['p50_ms'])} p99 {_ms(f['p99_ms'])} ms"
                + (f" ({f['errors']} errors: {f['statuses']})" if f["errors"] else "")
                for group, f in figures.items()))

        # The default daemon: alive, then the kill, its first GETs and its steady state.
        record("alive", default, summarize_all(default.phase(dead, requests), size))
        log(f"  killing server {dead + 1}: its proxy resets new connections and the open ones")
        killed.command("refuse")
        killed.command("cut")
        first: list[tuple[int, float, float, int]] = []
        default.reconnect()
        keys = default.by_primary[dead]
        while keys and default.backend_up(dead) and len(first) < FIRST_GETS_MAX:
            first.append(_get(default.client, keys[len(first) % len(keys)]))
        marked_down = not default.backend_up(dead)
        results["first_gets"] = {
            "count": len(first),
            "marked_down": marked_down,
            "ms": [round(s[2] * 1e3, 3) for s in first],
            "ttfb_ms": [round(s[1] * 1e3, 3) for s in first],
            "statuses": [s[0] for s in first],
        }
        log(f"  default: {len(first)} GETs tried the dead backend first "
            f"({', '.join(f'{s[2] * 1e3:.1f} ms ({s[0]})' for s in first)}); "
            f"{'then it was marked down' if marked_down else 'it is still up'}")
        if not marked_down:
            notes.append(f"the default daemon did not mark the dead backend down after {len(first)} GETs")
        record("dead, after down", default, summarize_all(default.phase(dead, requests), size))

        # The never-down daemon: alive, reset and refused blocks in turn, in rounds.
        killed.command("accept")
        pooled: dict[str, dict[str, list]] = {}
        per_block = max(2, requests // max(1, rounds))
        for _ in range(rounds):
            for phase, switch, revert in (
                ("alive", None, None),
                ("dead, before down", ("refuse", "cut"), ("accept",)),
                ("dead, port closed", ("close",), ("reopen",)),
            ):
                for word in switch or ():
                    killed.command(word)
                if switch is None:
                    never.reconnect()
                    for key in never.by_primary[dead][:2]:  # (its connections to the revived server)
                        _get(never.client, key)
                for group, samples in never.phase(dead, per_block).items():
                    pooled.setdefault(phase, {}).setdefault(group, []).extend(samples)
                for word in revert or ():
                    killed.command(word)
            if not never.backend_up(dead):
                notes.append("the never-down daemon marked the dead backend down: its 'before down' GETs are not that")
        for phase, groups in pooled.items():
            record(phase, never, {group: summarize(samples, size) for group, samples in groups.items()},
                   f" ({rounds} round{'s' * (rounds > 1)})")
        for side in sides:
            notes.extend(traceback_notes(f"the {side.name} failover daemon", side.daemon))
            results.setdefault("failovers", {})[side.name] = failover_count(side.daemon)
        results["added_ms"] = added(results)
        dead_figures = results["phases"]["dead, before down"]["never-down"].get(DEAD)
        results["failover_works"] = bool(dead_figures and dead_figures["ok"] and not dead_figures["errors"])
        if dead_figures and not dead_figures["ok"]:
            notes.append("no GET whose primary copy is dead succeeded: GET failover is not in place "
                         f"(answers {dead_figures['statuses']})")
    finally:
        for side in sides:
            side.client.close()
            side.daemon.stop()
        for proxy in proxies:
            proxy.close()
    for note in notes:
        log("WARNING: " + note)
    return results


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _signed(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:+.2f}"


def added(results: dict) -> dict[str, dict[str, Optional[float]]]:
    """
    {phase (with its daemon): {p50, p99, ttfb_p50}}: what the GETs of objects
    whose primary is on the killed server took more than the same daemon's
    GETs of the same objects in the alive phase.
    """
    phases = results.get("phases", {})
    out: dict[str, dict[str, Optional[float]]] = {}
    for phase, per_daemon in phases.items():
        if phase == "alive":
            continue
        for name, groups in per_daemon.items():
            dead, before = groups.get(DEAD), phases.get("alive", {}).get(name, {}).get(DEAD)
            if not dead or not before:
                continue
            out[f"{phase} ({name})"] = {
                field: None if dead[f"{field}_ms"] is None or before[f"{field}_ms"] is None
                else round(dead[f"{field}_ms"] - before[f"{field}_ms"], 3)
                for field in ("p50", "p99", "ttfb_p50")
            }
    return out


def rows(results: dict) -> list[list[str]]:
    """Phase, daemon, group, requests, errors, p50, p99, TTFB p50, TTFB p99, p50 over the phase's alive GETs."""
    out = []
    for phase, per_daemon in results.get("phases", {}).items():
        for name, groups in per_daemon.items():
            alive = groups.get(ALIVE, {}).get("p50_ms")
            for group, f in groups.items():
                added = None if group == ALIVE or alive is None or f["p50_ms"] is None else f["p50_ms"] - alive
                out.append([phase, name, group, str(f["requests"]), str(f["errors"]), _ms(f["p50_ms"]),
                            _ms(f["p99_ms"]), _ms(f["ttfb_p50_ms"]), _ms(f["ttfb_p99_ms"]),
                            "" if added is None else f"{added:+.2f}"])
    return out


def print_failover(results: dict, out: Callable[[str], None] = print) -> None:
    from bench.report import table

    out(f"\nGET failover: {results['size']} B objects with 2 copies, 1 client; latency of the GETs that "
        "answered 200 (bench/failover.py)")
    out(table(rows(results), ["phase", "daemon", "primary copy", "n", "errors", "p50 ms", "p99 ms",
                               "ttfb p50", "ttfb p99", "p50 - on other"], right_from=3))
    for phase, figures in results.get("added_ms", {}).items():
        out(f"{phase}: p50 {_signed(figures.get('p50'))} ms, p99 {_signed(figures.get('p99'))} ms, TTFB p50 "
            f"{_signed(figures.get('ttfb_p50'))} ms over the same daemon's GETs of the same objects with both up")
    first = results.get("first_gets")
    if first:
        out(f"default daemon, GETs that tried the dead backend before it was marked down: {first['count']} "
            f"({', '.join(f'{ms:.1f} ms' for ms in first['ms'])}; answers {first['statuses']})"
            + ("" if first["marked_down"] else "; NOT marked down"))
    if results.get("failovers"):
        out("failovers the daemons counted (s3balance_get_failovers_total): "
            + ", ".join(f"{name} {'-' if n is None else int(n)}" for name, n in results["failovers"].items()))
    if not results.get("failover_works", True):
        out("GET failover is NOT in place: a GET whose primary copy is on a dead backend failed")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "proxy":
        _serve_proxy(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m bench.failover proxy TARGET_PORT (the fault proxy of python -m bench --only failover)")
