"""
Soak: a bounded mixed load against a real daemon, showing that its memory and
open files stay flat and that every object reads back as written.

    make soak                          # 10 minutes (the proof)
    .venv/bin/python -m bench.soak --duration 60 --clients 8
    make soak ARGS="--duration 300 --database postgres"   # the daemon on PostgreSQL (or mariadb)

It starts two SeaweedFS servers and the daemon in front of them (SQLite by
default, round-robin), then runs N client threads doing a mix of PUT (1 KiB to 8 MiB,
some overwrites), GET (whole and ranged), HEAD, DELETE, ListObjectsV2, copy
and multipart uploads over a fixed key space, sampling the daemon's RSS and
open file descriptors every few seconds.  At the end it checks every key
against the last version acknowledged, that no write intent or queued
deletion is left, and prints a summary; exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MIB = 1024 * 1024


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _disk_gib(paths: list[Path]) -> float:
    """Bytes under the backends' data directories (their volumes), in GiB."""
    total = 0
    for path in paths:
        for root, _, files in os.walk(path):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    pass  # a volume compacted away meanwhile
    return total / 2**30


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _payload(key: str, version: int, size: int) -> bytes:
    seed = hashlib.sha256(f"{key}/{version}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


class Soak:
    def __init__(self, gateway, duration: float, clients: int, keys: int, seed: int) -> None:
        self.gateway = gateway
        self.duration = duration
        self.clients = clients
        self.keys = [f"soak/{index:03d}" for index in range(keys)]
        self.random = random.Random(seed)
        self.bucket = gateway.new_bucket(prefix="soak")
        self.lock = threading.Lock()
        # key -> (payload key, version, size) of the last acknowledged write
        # (a copy holds its source's payload), or None when deleted
        self.state: dict[str, object] = {}
        self.key_locks = {key: threading.Lock() for key in self.keys}
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self.samples: list[tuple[float, float, int]] = []
        self.disk: list[float] = []  # backend data on disk, GiB, one sample a minute
        self.version = 0

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def next_version(self) -> int:
        with self.lock:
            self.version += 1
            return self.version

    def worker(self, deadline: float, seed: int) -> None:
        from boto3.s3.transfer import TransferConfig

        rng = random.Random(seed)
        s3 = self.gateway.client()
        transfer = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
        while time.monotonic() < deadline:
            key = rng.choice(self.keys)
            roll = rng.random()
            try:
                # One writer per key at a time, so "last acknowledged" is well defined.
                with self.key_locks[key]:
                    if roll < 0.35:
                        size = rng.choice([1024, 4096, 64 * 1024, 1 * MIB, 8 * MIB])
                        version = self.next_version()
                        s3.put_object(Bucket=self.bucket, Key=key, Body=_payload(key, version, size))
                        self.state[key] = (key, version, size)
                        self.count("put")
                    elif roll < 0.40:
                        version = self.next_version()
                        path = Path(f"/tmp/soak-{os.getpid()}-{seed}.bin")
                        path.write_bytes(_payload(key, version, 11 * MIB))
                        s3.upload_file(str(path), self.bucket, key, Config=transfer)
                        path.unlink()
                        self.state[key] = (key, version, 11 * MIB)
                        self.count("multipart")
                    elif roll < 0.48:
                        s3.delete_object(Bucket=self.bucket, Key=key)
                        self.state[key] = None
                        self.count("delete")
                    elif roll < 0.52 and self.state.get(key):
                        target = rng.choice(self.keys)
                        if target != key and self.key_locks[target].acquire(blocking=False):
                            try:
                                s3.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": key})
                                self.state[target] = self.state[key]
                                self.count("copy")
                            finally:
                                self.key_locks[target].release()
                    elif roll < 0.90:
                        expected = self.state.get(key)
                        if expected:
                            origin, version, size = expected  # type: ignore[misc]
                            if size > 10 and rng.random() < 0.3:
                                got = s3.get_object(Bucket=self.bucket, Key=key, Range="bytes=5-9")["Body"].read()
                                want = _payload(origin, version, size)[5:10]
                            else:
                                got = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                                want = _payload(origin, version, size)
                            if got != want:
                                self.errors.append(f"{key}: read {len(got)} bytes that are not version {version}")
                            self.count("get")
                    elif roll < 0.95:
                        if self.state.get(key):
                            s3.head_object(Bucket=self.bucket, Key=key)
                        self.count("head")
                    else:
                        s3.list_objects_v2(Bucket=self.bucket, Prefix="soak/", MaxKeys=50)
                        self.count("list")
            except Exception as error:  # noqa: BLE001 - every failure is a finding
                self.errors.append(f"{type(error).__name__}: {error}"[:300])

    def sampler(self, deadline: float, interval: float) -> None:
        pid = self.gateway.daemon.process.pid
        data_dirs = [server.data_dir for server in self.gateway.backends]
        start = time.monotonic()
        next_disk = start
        while time.monotonic() < deadline:
            self.samples.append((time.monotonic() - start, _rss_mib(pid), _fds(pid)))
            if time.monotonic() >= next_disk:
                self.disk.append(_disk_gib(data_dirs))
                next_disk += 60
            time.sleep(interval)

    def run(self, interval: float) -> int:
        deadline = time.monotonic() + self.duration
        threads = [threading.Thread(target=self.worker, args=(deadline, index)) for index in range(self.clients)]
        threads.append(threading.Thread(target=self.sampler, args=(deadline, interval)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self.verify()

    def verify(self) -> int:
        from tests.daemon import database_counts, poll

        s3 = self.gateway.client()
        for key, expected in sorted(self.state.items()):
            try:
                got = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except Exception as error:  # noqa: BLE001
                if expected is not None:
                    self.errors.append(f"final read of {key}: {error}")
                continue
            if expected is None:
                self.errors.append(f"{key} was deleted last but still reads")
            elif got != _payload(*expected):  # type: ignore[misc]
                self.errors.append(f"{key}: final bytes are not the last acknowledged version")
        try:
            poll(
                lambda: database_counts(self.gateway.daemon, self.bucket)["write_intents"] == 0,
                timeout=30,
                message="write intents left",
            )
        except AssertionError as error:
            self.errors.append(str(error))
        return self.report()

    def report(self) -> int:
        samples = self.samples
        warm = [s for s in samples if s[0] >= min(60.0, self.duration / 4)] or samples
        first, last = warm[0], warm[-1]
        peak_rss = max(s[1] for s in samples)
        rss_growth = last[1] - first[1]
        fd_growth = last[2] - first[2]
        print(f"soak: {self.duration:.0f} s, {self.clients} clients, {len(self.keys)} keys")
        print("operations: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())))
        print(f"RSS MiB: start {samples[0][1]:.1f}, after warm-up {first[1]:.1f}, end {last[1]:.1f}, peak {peak_rss:.1f}")
        print(f"open files: start {samples[0][2]}, after warm-up {first[2]}, end {last[2]}, max {max(s[2] for s in samples)}")
        if self.disk:
            print(f"backend data on disk GiB (a minute apart): {', '.join(f'{g:.1f}' for g in self.disk)}")
        curve = [samples[min(len(samples) - 1, int(len(samples) * f))] for f in (0.1, 0.25, 0.5, 0.75, 1.0)]
        print("RSS MiB over time: " + ", ".join(f"{t:.0f}s {rss:.1f}" for t, rss, _ in curve))
        checks = [
            ("no read or request failed", not self.errors),
            ("RSS after warm-up grows < 32 MiB", rss_growth < 32),
            ("open files after warm-up grow < 32", fd_growth < 32),
        ]
        for name, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
        for error in self.errors[:20]:
            print(f"  error: {error}")
        return 0 if all(ok for _, ok in checks) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keys", type=int, default=64)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres", "mariadb"],
        default="sqlite",
        help="the daemon's metadata database (postgres, mariadb: a fresh database on the test suite's servers)",
    )
    args = parser.parse_args(argv)
    from tests.daemon import start_gateway
    from tests.harness.seaweedfs import set_shared_extra_args

    # Overwritten and deleted objects are garbage in SeaweedFS's volumes until
    # a vacuum compacts them (by default every 14 minutes, and only volumes
    # 30 % garbage): at ~100 MB/s of writes that filled the disk after 17
    # minutes ("No writable volumes").  Ask for one every minute (under this
    # load SeaweedFS still reclaims little: the report shows the data on disk).
    set_shared_extra_args("-master.vacuumIntervalSeconds=60", "-master.garbageThreshold=0.1")
    sections: dict = {"balancer": {"deletion_grace": "5s"}}
    url = None
    if args.database != "sqlite":
        from tests import dbfixtures

        kind = dbfixtures.POSTGRES if args.database == "postgres" else dbfixtures.MYSQL
        url = dbfixtures.create_database(kind)
        sections["database"] = {"type": "postgres" if kind == dbfixtures.POSTGRES else "mysql", "dsn": url}
    try:
        gateway = start_gateway("soak", **sections)
        try:
            return Soak(gateway, args.duration, args.clients, args.keys, args.seed).run(args.interval)
        finally:
            gateway.daemon.stop()
    finally:
        if url is not None:
            dbfixtures.drop_database(url)


if __name__ == "__main__":
    raise SystemExit(main())
