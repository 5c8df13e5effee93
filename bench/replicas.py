"""
PUT throughput with C{replicas: 2} beside C{replicas: 1} (section C{replicas}).

The target: a 64 MiB PutObject into a bucket with C{replicas: 2} (every
object streamed to two distinct backends at once, acknowledged when both
stored it) runs at >= 0.8 x the rate of the same PUT with C{replicas: 1}.

One daemon (SQLite, proxy mode, auth on, round-robin, production defaults,
the run's C{--daemon-config} overrides but the database's) over two
backends on two SeaweedFS servers (the run's and a second one,
L{Environment.pair}), with two virtual buckets that differ only in their copies: C{bench-r1} (C{replicas: 1}: each
PUT goes to one backend, round-robin between the two) and C{bench-r2}
(C{replicas: 2}: each PUT goes to both).  Both are measured as targets of
the throughput scenarios (C{put64m@1}, C{put64m@8}: one key per client,
overwritten), in rounds whose order rotates, so one daemon, one pair of
servers and one stretch of time serve both.  Afterwards the daemon's
database is asked how many copies the objects of each bucket have, so a
replica write that silently made one copy shows.

The two backends share this machine's cores and disk: with two copies the
servers do twice the write work of one copy.  The ratio is what that costs
here, not on two machines.

    python -m bench --only replicas
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Optional

import yaml

from bench import throughput
from bench.environment import Environment, Target, set_dotted, start_daemon, warm
from bench.nginx import children
from bench.workers import WorkerPool
from tests.daemon import ACCESS_KEY, SECRET_KEY, Daemon, backend_entry, base_config
from tests.harness import SeaweedFS, harness_dir

ONE, TWO = "bench-r1", "bench-r2"  # the virtual buckets, replicas: 1 and 2
REAL = ("bench-rep-a", "bench-rep-b")  # the real buckets, one on each SeaweedFS
TARGETS = ("replicas1", "replicas2")
FLOOR = 0.8  # replicas: 2 MB/s >= 0.8 x replicas: 1 MB/s


def two_backend_config(
    servers: Sequence[SeaweedFS],
    real: Sequence[str],
    workdir: Path,
    virtual: list[dict[str, Any]],
    endpoints: Optional[Sequence[Optional[str]]] = None,
    balancer: Optional[dict[str, Any]] = None,
    overrides: Optional[list[str]] = None,
) -> dict:
    """
    The benchmark daemon's config (as L{bench.environment.daemon_config}:
    SQLite, proxy mode, auth on, round-robin, production defaults) over two
    backends; C{endpoints} replace the servers' own (a proxy in front),
    C{balancer} adds balancer keys, C{overrides} are C{--daemon-config}
    (but for C{database.*}: see L{own_database}).
    """
    endpoints = endpoints or [None] * len(servers)
    entries = [
        backend_entry(server, bucket, **({"endpoint": endpoint} if endpoint else {}))
        for server, bucket, endpoint in zip(servers, real, endpoints, strict=True)
    ]
    config = base_config(entries, [], workdir)
    config["buckets"] = entries + [{"virtual": True, **bucket} for bucket in virtual]
    config["balancer"] = {"strategy": "round-robin", **(balancer or {})}
    config["s3api"].update({"proxy_mode": True, "auth_required": True})
    for item in own_database(overrides):
        name, _, text = item.partition("=")
        set_dotted(config, name.strip(), yaml.safe_load(text))
    return config


def own_database(overrides: Optional[list[str]]) -> list[str]:
    """
    C{overrides} without the C{database.*} ones: these daemons keep a SQLite
    database of their own (a database shared with the run's main daemon would
    be two daemons with different backends on one metadata store, and the
    copies are read from the SQLite file).
    """
    return [item for item in overrides or [] if not item.strip().startswith("database.")]


def daemon_pids(daemon: Daemon) -> Callable[[], list[int]]:
    """The daemon and its worker processes (server.workers), as the throughput rounds count CPU."""

    def pids() -> list[int]:
        pid = daemon.process.pid
        return [] if pid is None else [pid, *children(pid)]

    return pids


def server_pids(servers: Sequence[SeaweedFS]) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        found = []
        for server in servers:
            process = server.process()
            if process is not None and process.pid is not None:
                found.append(process.pid)
        return found

    return pids


def traceback_notes(label: str, daemon: Daemon, limit: int = 3) -> list[str]:
    """
    One note per traceback in C{daemon}'s log (at most C{limit}): the message
    logged with it and the exception's last line, as the log goes when the
    run ends (without C{--keep}).
    """
    lines = [re.sub(r"^\S+ \[[^\]]*\] ", "", line) for line in daemon.log().splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
    notes = []
    for i in starts[:limit]:
        end = i + 1
        while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
            end += 1
        message = lines[i - 1].strip() if i else ""
        error = lines[end].strip() if end < len(lines) else "?"
        notes.append(f"{label} logged a traceback: {message[:200]} -> {error[:300]}")
    if len(starts) > limit:
        notes.append(f"{label} logged {len(starts)} tracebacks in all")
    return notes


def copies(config: dict, buckets: Sequence[str]) -> dict[str, dict[str, int]]:
    """{bucket: {copies per object: objects}} from the daemon's SQLite database ({} on another database)."""
    database = config.get("database", {})
    if database.get("type") != "sqlite":
        return {}
    found: dict[str, dict[str, int]] = {}
    with closing(sqlite3.connect(f"file:{database['dsn']}?mode=ro", uri=True, timeout=30)) as connection:
        for bucket in buckets:
            rows = connection.execute(
                "SELECT n, COUNT(*) FROM (SELECT COUNT(l.id) AS n FROM objects o"
                " JOIN object_locations l ON l.object_id = o.id WHERE o.bucket = ? GROUP BY o.id)"
                " GROUP BY n ORDER BY n",
                (bucket,),
            ).fetchall()
            found[bucket] = {str(n): count for n, count in rows}
    return found


def run(
    pool: WorkerPool,
    env: Environment,
    clients: list[int],
    rounds: int,
    size: int,
    duration: float,
    daemon_overrides: Optional[list[str]] = None,
    twistd_args: str = "",
    log: Callable[[str], None] = print,
) -> dict:
    """
    -> {"size", "scenarios": {"put64m@N": {"scenario", "targets": {replicas1, replicas2}, "ratio",
    "ratio_rounds", "cpu_ratio"}}, "copies", "notes"}.  C{cpu_ratio}: the client's, the daemon's and
    the servers' CPU time per PUT with one copy / with two, the ratio a machine whose cores are the
    limit allows.
    """
    servers = env.pair(log)
    for server, bucket in zip(servers, REAL, strict=True):
        server.create_bucket(bucket)
    workdir = Path(harness_dir()) / "bench-replicas"
    workdir.mkdir(parents=True, exist_ok=True)
    config = two_backend_config(
        servers, REAL, workdir, [{"name": ONE, "replicas": 1}, {"name": TWO, "replicas": 2}],
        overrides=daemon_overrides,
    )
    log(f"starting s3balance over two backends (buckets {ONE}: replicas 1, {TWO}: replicas 2) ...")
    daemon = start_daemon(config, "bench-replicas", twistd_args)
    notes: list[str] = []
    if len(own_database(daemon_overrides)) != len(daemon_overrides or []):
        notes.append("the replicas daemon keeps its own SQLite database (the database.* overrides are not for it)")
    try:
        targets = [
            Target(name, daemon.endpoint, ACCESS_KEY, SECRET_KEY, bucket, daemon_pids(daemon), server_pids(servers))
            for name, bucket in zip(TARGETS, (ONE, TWO), strict=True)
        ]
        warm(targets, log)
        chosen = [throughput.Scenario("put64m", "put", size, count, duration, 1) for count in clients]
        measured = throughput.run(pool, targets, chosen, rounds, log=log)
        for data in measured.values():
            one, two = (data["targets"][name] for name in TARGETS)
            data["ratio"] = two["mb_per_s"] / one["mb_per_s"] if one["mb_per_s"] else None
            # What the ratio would be if CPU were all that limits (client, daemon and both servers share 2 cores).
            cpu = [t["client_cpu_us_per_op"] + t["proxy_cpu_us_per_op"] + t["backend_cpu_us_per_op"] for t in (one, two)]
            data["cpu_ratio"] = cpu[0] / cpu[1] if cpu[1] else None
            data["ratio_rounds"] = [
                round(b / a, 3) if a else None
                for a, b in zip(one["mb_per_s_rounds"], two["mb_per_s_rounds"], strict=True)
            ]
        found = copies(config, (ONE, TWO))
        if found and (set(found.get(ONE, {})) - {"1"} or set(found.get(TWO, {})) - {"2"}):
            notes.append(f"objects with an unexpected number of copies: {found}")
        notes.extend(traceback_notes("the replicas daemon", daemon))
    finally:
        daemon.stop()
    for note in notes:
        log("WARNING: " + note)
    return {"size": size, "rounds": rounds, "scenarios": measured, "copies": found, "notes": notes}

