"""
The s3balance daemon as a real process for integration tests: a config file
written from a dict, C{twistd -n s3balance}, readiness on C{/health}.

C{shared_gateway()} is one daemon per test process in front of the two shared
SeaweedFS servers; tests create their own virtual buckets through the S3 API
(CreateBucket), so they never see each other's objects.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import os
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import yaml

from tests.harness import (
    HarnessError,
    ManagedProcess,
    boto3_client,
    free_port,
    harness_dir,
    shared_seaweedfs_pair,
    unique_bucket_name,
    wait_for_http,
)
from tests.harness.process import venv_bin

ROOT = Path(__file__).resolve().parents[1]
ACCESS_KEY = "s3b-test-key"
SECRET_KEY = "s3b-test-secret"


def backend_entry(server, bucket: str, **extra: Any) -> dict:
    entry = {
        "name": bucket,
        "endpoint": server.endpoint,
        "region": "us-east-1",
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
        "path_style": True,
        "virtual": False,
    }
    entry.update(extra)
    return entry


def base_config(backends: list[dict], virtual: list[str], workdir: Path, **sections: Any) -> dict:
    config: dict = {
        "server": {"host": "127.0.0.1", "port": free_port(), "shutdown_grace": "5s"},
        "database": {"type": "sqlite", "dsn": str(workdir / "s3balance.db")},
        "buckets": backends + [{"name": name, "virtual": True} for name in virtual],
        "balancer": {
            "strategy": "round-robin",
            "health_check_period": "1s",
            "cleanup_period": "1s",
            "update_stats_period": "2s",
            "retry_delay": "0.1s",
            "deletion_grace": "0s",
        },
        "metrics": {"enabled": True, "path": "/metrics"},
        "s3api": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "auth_required": True},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section].update(values)
        else:
            config[section] = values
    return config


_compiled = False
_compile_lock = threading.Lock()


def compile_sources() -> None:
    """
    Byte-compile the daemon's sources once per test process, so that every
    daemon (and admin CLI) started by the tests loads them from C{__pycache__}
    even where C{PYTHONDONTWRITEBYTECODE} is set: compiling them again in
    each child would cost every start a third of a second of CPU.
    """
    global _compiled
    with _compile_lock:
        if _compiled:
            return
        _compiled = True
        import compileall

        for folder in ("s3balance", "migrations", "twisted/plugins"):
            compileall.compile_dir(ROOT / folder, quiet=2)


def migrated_sqlite_template() -> Path:
    """
    An empty SQLite store at the newest schema revision, migrated once per
    test process (L{tests.dbfixtures.migrated_sqlite_template}): a daemon's
    new SQLite database starts as a copy of it, so the daemon finds its
    schema current and neither loads Alembic nor migrates (a third of a
    second of CPU at each of the suite's ~200 starts).
    """
    from tests import dbfixtures

    return Path(dbfixtures.migrated_sqlite_template())


class Daemon:
    def __init__(self, config: dict, name: str = "s3balance") -> None:
        compile_sources()
        self.config = copy.deepcopy(config)
        self.workdir = Path(harness_dir()) / f"{name}-{os.getpid()}-{time.monotonic_ns()}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "config.yaml"
        self.write_config()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.process = ManagedProcess(
            name,
            [venv_bin("twistd"), "-n", "--pidfile=", "s3balance", "--config", str(self.config_path)],
            env=env,
            cwd=str(self.workdir),
            log_path=self.workdir / "daemon.log",
        )

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))

    @property
    def port(self) -> int:
        return int(self.config["server"]["port"])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Daemon:
        self._seed_sqlite_store()
        self.process.start()
        deadline = time.monotonic() + timeout
        wait_for_http(f"{self.endpoint}/health", timeout=timeout, process=self.process)
        # The port listens before the store is up; /health says so.
        poll(lambda: self.health().get("status") != "starting", timeout=max(1.0, deadline - time.monotonic()),
             interval=0.05, message="the daemon did not finish starting")
        return self

    def _seed_sqlite_store(self) -> None:
        """A missing SQLite store is created from the migrated template (see L{migrated_sqlite_template})."""
        database = self.config.get("database", {})
        if database.get("type", "sqlite") != "sqlite" or database.get("auto_migrate") is False:
            return
        dsn = str(database.get("dsn", ""))
        if not dsn or dsn == ":memory:" or dsn.startswith("file:") or "?" in dsn:
            return
        path = Path(dsn) if os.path.isabs(dsn) else self.workdir / dsn
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(migrated_sqlite_template(), path)

    def stop(self) -> Optional[int]:
        return self.process.stop()

    def kill(self) -> Optional[int]:
        return self.process.kill()

    def log(self) -> str:
        return (self.workdir / "daemon.log").read_text(errors="replace")

    def client(self, **kwargs: Any):
        return boto3_client(self.endpoint, ACCESS_KEY, SECRET_KEY, **kwargs)

    def health(self) -> dict:
        import json

        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def rss_kib(self) -> tuple[int, int]:
        """(current RSS, peak RSS) of the daemon, in KiB."""
        values = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0])
        return values["VmRSS"], values["VmHWM"]


class Gateway:
    """A running daemon with its backends, for tests that share it."""

    def __init__(self, daemon: Daemon, backends: list, real_buckets: list[str]) -> None:
        self.daemon = daemon
        self.backends = backends
        self.real_buckets = real_buckets

    def client(self, **kwargs: Any):
        return self.daemon.client(**kwargs)

    def new_bucket(self, client=None, prefix: str = "t") -> str:
        client = client or self.client()
        name = unique_bucket_name(prefix)
        client.create_bucket(Bucket=name)
        return name

    def backend_keys(self, prefix: str = "") -> dict[str, list[str]]:
        """Every key on every real bucket (for leak checks), by real bucket name."""
        found = {}
        for server, bucket in zip(self.backends, self.real_buckets, strict=True):
            direct = server.direct()
            keys = []
            for page in direct.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
            found[bucket] = keys
        return found


_shared: dict[str, Gateway] = {}
_lock = threading.Lock()


def start_gateway(name: str = "gw", **sections: Any) -> Gateway:
    """A new daemon over the two shared SeaweedFS servers, with fresh real buckets."""
    first, second = shared_seaweedfs_pair()
    real = [unique_bucket_name("real"), unique_bucket_name("real")]
    first.create_bucket(real[0])
    second.create_bucket(real[1])
    workdir = Path(harness_dir()) / f"{name}-{time.monotonic_ns()}"
    workdir.mkdir(parents=True, exist_ok=True)
    config = base_config(
        [backend_entry(first, real[0]), backend_entry(second, real[1])],
        ["vb-default"],
        workdir,
        **sections,
    )
    daemon = Daemon(config, name=name).start()
    return Gateway(daemon, [first, second], real)


def shared_gateway() -> Gateway:
    with _lock:
        if "default" not in _shared:
            _shared["default"] = start_gateway("shared-gw")
        return _shared["default"]


@atexit.register
def _stop_shared() -> None:
    for gateway in _shared.values():
        try:
            gateway.daemon.stop()
        except HarnessError:
            pass
    _shared.clear()


def background_runs(endpoint: str, job: str, timeout: float = 5.0) -> float:
    """s3balance_background_runs_total{job=...} on the /metrics of the daemon at C{endpoint} (0 before its first run)."""
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    found = re.search(r'^s3balance_background_runs_total\{job="' + re.escape(job) + r'"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def poll(condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, message: str = "") -> Any:
    """Wait for condition() to be truthy; fail with message after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout}s")
        time.sleep(interval)


class PatternStream:
    """A deterministic, seekable-free byte stream of `size` bytes with a running sha256."""

    def __init__(self, size: int, seed: int = 1, block: int = 1 << 20) -> None:
        self.size = size
        self.remaining = size
        self.block = hashlib.sha256(str(seed).encode()).digest() * (block // 32)
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        n = len(self.block) if n is None or n < 0 else min(n, len(self.block))
        n = min(n, self.remaining)
        chunk = self.block[:n]
        self.remaining -= n
        self.sha256.update(chunk)
        return chunk

    def __iter__(self):
        while True:
            chunk = self.read(len(self.block))
            if not chunk:
                return
            yield chunk


def sign(method: str, url: str, headers: Optional[dict] = None, payload: str = "UNSIGNED-PAYLOAD") -> dict:
    """Headers of a SigV4-signed request with our test credentials (botocore's signer)."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    class Signer(botocore.auth.S3SigV4Auth):
        def payload(self, request):
            return payload

    headers = dict(headers or {})
    request = botocore.awsrequest.AWSRequest(method=method, url=url, headers=headers)
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    Signer(credentials, "s3", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def database_counts(daemon: Daemon, bucket: str) -> dict[str, int]:
    """Rows of the daemon's store that concern one virtual bucket (SQLite read-only, or a server)."""
    database = daemon.config["database"]
    like = bucket + "/%"
    queries = {
        "objects": ("SELECT COUNT(*) FROM objects WHERE bucket = :arg", bucket),
        "write_intents": ("SELECT COUNT(*) FROM write_intents WHERE real_key LIKE :arg", like),
        "deletion_queue": ("SELECT COUNT(*) FROM deletion_queue WHERE real_key LIKE :arg", like),
    }
    if database.get("type", "sqlite") == "sqlite":
        import sqlite3

        path = database["dsn"]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
            return {name: connection.execute(sql, {"arg": arg}).fetchone()[0] for name, (sql, arg) in queries.items()}
    from sqlalchemy import create_engine, text

    from s3balance.config import dsn_to_url

    engine = create_engine(dsn_to_url(database["type"], database["dsn"]))
    try:
        with engine.connect() as connection:
            return {name: connection.execute(text(sql), {"arg": arg}).scalar() for name, (sql, arg) in queries.items()}
    finally:
        engine.dispose()


def write_pattern_file(path, size: int, seed: int = 0) -> str:
    """Write size bytes to path, MiB by MiB (a random MiB stamped with its index); -> sha256 hex."""
    mib = 1024 * 1024
    base = bytearray(os.urandom(mib))
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        written, index = 0, 0
        while written < size:
            base[:16] = (seed * 1_000_003 + index).to_bytes(16, "big")
            block = bytes(base[: min(mib, size - written)])
            out.write(block)
            digest.update(block)
            written += len(block)
            index += 1
    return digest.hexdigest()


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
