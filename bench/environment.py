"""
What a benchmark run talks to: one SeaweedFS (C{weed mini}), the s3balance
daemon in front of it (SQLite, proxy mode, auth on, one backend,
round-robin) and nginx as a plain reverse proxy in front of the same
SeaweedFS.  Each is a L{Target}: an endpoint, keys, a bucket, and the
processes whose CPU time a request costs.

The servers come from the test harness (tests/harness, tests/daemon.py), so
the benchmark runs exactly what the integration tests run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from bench.nginx import Nginx, children, find_nginx
from bench.sigv4client import S3Client
from tests.daemon import ACCESS_KEY, SECRET_KEY, Daemon, backend_entry, base_config
from tests.harness import ManagedProcess, SeaweedFS, free_port, harness_dir, wait_for_port

REAL_BUCKET = "bench-real"  # the daemon's backend bucket
PLAIN_BUCKET = "bench-plain"  # what direct and nginx clients use
VIRTUAL_BUCKET = "bench"  # what s3balance clients use
LIST_BUCKET = "bench-list"

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    values = {"VmRSS": 0, "VmHWM": 0}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in values:
                values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Target:
    """One way to reach the storage: direct, through s3balance, through nginx."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    proxy_pids: Callable[[], list[int]]  # the proxy's processes ([] for direct)
    backend_pids: Callable[[], list[int]]  # SeaweedFS
    small_only: bool = False  # the floor proxy buffers request bodies: 4 KiB scenarios only

    def client(self) -> S3Client:
        return S3Client(self.endpoint, self.access_key, self.secret_key)

    def job(self, **values: Any) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "bucket": self.bucket,
            **values,
        }


def set_dotted(config: dict, dotted: str, value: Any) -> None:
    """C{set_dotted(config, "balancer.strategy", "weighted")}."""
    node = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def daemon_config(
    seaweed: SeaweedFS,
    workdir: Path,
    virtual: list[str],
    database: Optional[dict] = None,
    overrides: Optional[list[str]] = None,
) -> dict:
    """The daemon's config: SQLite, proxy mode, auth on, one backend, round-robin."""
    config = base_config([backend_entry(seaweed, REAL_BUCKET)], virtual, workdir)
    # The test harness checks health and cleans up every second; a deployment
    # would not, so production defaults here.
    config["balancer"] = {"strategy": "round-robin"}
    config["s3api"].update({"proxy_mode": True, "auth_required": True})
    if database is not None:
        config["database"] = database
    for item in overrides or []:
        name, _, text = item.partition("=")
        set_dotted(config, name.strip(), yaml.safe_load(text))
    return config


def start_daemon(config: dict, name: str, twistd_args: str = "") -> Daemon:
    daemon = Daemon(config, name=name)
    extra = shlex.split(twistd_args)
    if extra:
        # twistd's own options go before the plugin name: twistd -n [extra] s3balance --config ...
        args = daemon.process.args
        at = args.index("s3balance")
        daemon.process.args = args[:at] + extra + args[at:]
    return daemon.start()


@dataclass
class Environment:
    seaweed: SeaweedFS
    daemon: Daemon
    nginx: Optional[Nginx]
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    floor: Optional[ManagedProcess] = None  # bench/floor.py, with --floor
    second: Optional[SeaweedFS] = None  # a second SeaweedFS, for the sections that need two backends

    def target(self, name: str) -> Optional[Target]:
        return next((t for t in self.targets if t.name == name), None)

    def pair(self, log: Callable[[str], None] = print) -> tuple[SeaweedFS, SeaweedFS]:
        """The run's SeaweedFS and a second one (started on first use), for two distinct backends."""
        if self.second is None:
            log("starting a second SeaweedFS (weed mini) ...")
            self.second = SeaweedFS(name="bench-seaweedfs-2").start()
        return self.seaweed, self.second

    def close(self, keep: bool = False) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        if self.floor is not None:
            self.floor.stop(timeout=5.0)
        try:
            self.daemon.stop()
        finally:
            self.seaweed.close()
            if self.second is not None:
                self.second.close()
        if not keep:
            shutil.rmtree(self.daemon.workdir, ignore_errors=True)


def start_environment(
    daemon_overrides: Optional[list[str]] = None,
    twistd_args: str = "",
    use_nginx: bool = True,
    nginx_workers: str = "auto",
    nginx_buffer: str = "",
    floor: bool = False,
    log: Callable[[str], None] = print,
) -> Environment:
    seaweed = SeaweedFS(name="bench-seaweedfs")
    log("starting SeaweedFS (weed mini) ...")
    seaweed.start()
    daemon: Optional[Daemon] = None
    nginx: Optional[Nginx] = None
    floor_process: Optional[ManagedProcess] = None
    notes: list[str] = []
    try:
        seaweed.create_bucket(REAL_BUCKET)
        seaweed.create_bucket(PLAIN_BUCKET)
        workdir = Path(harness_dir()) / "bench-daemon"
        workdir.mkdir(parents=True, exist_ok=True)
        config = daemon_config(seaweed, workdir, [VIRTUAL_BUCKET, LIST_BUCKET], overrides=daemon_overrides)
        log(f"starting s3balance on 127.0.0.1:{config['server']['port']} ...")
        daemon = start_daemon(config, "bench-s3balance", twistd_args)
        if use_nginx:
            if find_nginx() is None:
                from bench.nginx import INSTALL_HINT

                notes.append(INSTALL_HINT)
                log("WARNING: " + INSTALL_HINT + "; the nginx column stays empty")
            else:
                nginx = Nginx(f"127.0.0.1:{seaweed.port}", workers=nginx_workers, buffer=nginx_buffer).start()
                log(f"started nginx on 127.0.0.1:{nginx.port} (workers: {nginx_workers}, "
                    f"proxy_buffer_size: {nginx_buffer or 'default'})")
        if floor:
            floor_process, floor_port = start_floor(seaweed, workdir)
            log(f"started the bare Twisted proxy (bench/floor.py) on 127.0.0.1:{floor_port}")
    except BaseException:
        if floor_process is not None:
            floor_process.stop(timeout=5.0)
        if nginx is not None:
            nginx.stop()
        if daemon is not None:
            daemon.stop()
        seaweed.close()
        raise
    def pids_of(process) -> Callable[[], list[int]]:
        return lambda: [pid for pid in [process.pid if process is not None else None] if pid is not None]

    def with_workers(process) -> Callable[[], list[int]]:
        # The daemon and, in multi-process mode (server.workers), its worker processes.
        return lambda: [pid for pid in pids_of(process)() for pid in (pid, *children(pid))]

    weed_pids = pids_of(seaweed.process())
    targets = [
        Target("direct", seaweed.endpoint, seaweed.access_key, seaweed.secret_key, PLAIN_BUCKET, list, weed_pids),
        Target(
            "s3balance",
            daemon.endpoint,
            ACCESS_KEY,
            SECRET_KEY,
            VIRTUAL_BUCKET,
            with_workers(daemon.process),
            weed_pids,
        ),
    ]
    if nginx is not None:
        targets.append(
            Target("nginx", nginx.endpoint, seaweed.access_key, seaweed.secret_key, PLAIN_BUCKET, nginx.pids, weed_pids)
        )
    if floor_process is not None:
        targets.append(
            Target(
                "twisted",
                f"http://127.0.0.1:{floor_port}",
                seaweed.access_key,
                seaweed.secret_key,
                PLAIN_BUCKET,
                pids_of(floor_process),
                weed_pids,
                small_only=True,
            )
        )
    warm(targets, log)
    return Environment(seaweed, daemon, nginx, targets, notes, floor_process)


def start_floor(seaweed: SeaweedFS, workdir: Path) -> tuple[ManagedProcess, int]:
    """The bare Twisted proxy of bench/floor.py in front of C{seaweed}, with s3balance's Python."""
    port = free_port()
    process = ManagedProcess(
        "bench-floor",
        [sys.executable, "-m", "bench.floor", str(port), f"127.0.0.1:{seaweed.port}"],
        log_path=workdir / "floor.log",
        cwd=str(ROOT),
    )
    process.start()
    wait_for_port("127.0.0.1", port, timeout=15.0, process=process)
    return process, port


def warm(targets: list[Target], log: Callable[[str], None] = print) -> None:
    """
    A few writes through every target before anything is timed: SeaweedFS
    grows its volumes on the first writes to a bucket (a second or more),
    which must not land in whichever target is measured first.
    """
    from bench.sigv4client import FlatBody

    log("warming up (SeaweedFS allocates volumes on first writes) ...")
    for target in targets:
        client = target.client()
        try:
            for i in range(20):
                client.put(target.bucket, f"warmup/{i}", FlatBody(4096 if i % 4 else 1 << 20))
                client.get(target.bucket, f"warmup/{i}")
        finally:
            client.close()
