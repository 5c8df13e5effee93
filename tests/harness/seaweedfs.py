"""A real SeaweedFS (``weed mini``) on 127.0.0.1 for integration tests.

``shared_seaweedfs()`` and ``shared_seaweedfs_pair()`` start lazily once per
test process and stop at exit, so the whole suite pays the start-up (about a
second) once; each test makes its own buckets with ``unique_bucket_name``.
A test that kills or restarts a server makes its own ``SeaweedFS`` instead::

    server = SeaweedFS("ak", "sk")
    server.start()
    self.addCleanup(server.close)

SeaweedFS checks SigV4 signatures against the identity given here.
"""

from __future__ import annotations

import atexit
import json
import random
import threading
import urllib.request
from pathlib import Path
from typing import Any

from .clients import boto3_client
from .process import (
    HarnessError,
    ManagedProcess,
    free_port,
    free_ports,
    harness_dir,
    poll_until,
    remove_tree,
    reserve_ports,
    venv_bin,
    wait_for_http,
)

__all__ = [
    "SHARED_ACCESS_KEY",
    "SHARED_SECRET_KEY",
    "SeaweedFS",
    "shared_seaweedfs",
    "shared_seaweedfs_pair",
]

SHARED_ACCESS_KEY = "s3balance-test"
SHARED_SECRET_KEY = "s3balance-test-secret"

# weed's worker dials the admin server's gRPC port at admin port + 10000 no
# matter what -admin.port.grpc says, so the admin port is picked from a range
# where that offset stays below the kernel's ephemeral range (see
# ``process._PORT_RANGE``), and both are reserved together.
_GRPC_OFFSET = 10000
_ADMIN_PORT_RANGE = (12000, 22000)

_ids = iter(range(1, 1_000_000))
_ids_lock = threading.Lock()


def _admin_port() -> int:
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(*_ADMIN_PORT_RANGE)
        if reserve_ports([port, port + _GRPC_OFFSET]):
            return port
    raise HarnessError("no free port pair (p, p+10000) for the SeaweedFS admin server")


class SeaweedFS:
    """One ``weed mini`` process: master, volume, filer and S3 gateway.

    Ports and the data directory are chosen on the first ``start()`` and kept,
    so ``restart()`` (and ``kill()`` then ``start()``) brings back the same
    endpoint with the same data.
    """

    def __init__(
        self,
        access_key: str = SHARED_ACCESS_KEY,
        secret_key: str = SHARED_SECRET_KEY,
        *,
        name: str | None = None,
        s3_port: int | None = None,
        data_dir: str | Path | None = None,
        run_dir: str | Path | None = None,
        log_path: str | Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        with _ids_lock:
            number = next(_ids)
        self.name = name or f"seaweedfs-{number}"
        self.access_key = access_key
        self.secret_key = secret_key
        self._direct = threading.local()
        self._requested_s3_port = s3_port
        self._own_data_dir = data_dir is None
        self._own_run_dir = run_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else harness_dir() / f"{self.name}-data"
        self.run_dir = Path(run_dir) if run_dir is not None else harness_dir() / f"{self.name}-run"
        self.log_path = Path(log_path) if log_path is not None else harness_dir() / f"{self.name}.log"
        self.extra_args = tuple(extra_args)
        self.ports: dict[str, int] = {}
        self._process: ManagedProcess | None = None
        self._volumes_on_disk = 0

    def __repr__(self) -> str:
        return f"<SeaweedFS {self.name} {self.endpoint if self.ports else '(not started)'}>"

    @property
    def endpoint(self) -> str:
        if not self.ports:
            raise HarnessError(f"{self.name} has not been started")
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def port(self) -> int:
        return int(self.ports["s3"])

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def _choose_ports(self) -> None:
        # Reserved for this process's life (see process.free_ports), so the
        # shared pair, launched before either binds, never gets one port twice.
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc"]
        chosen = dict(zip(names, free_ports(len(names)), strict=True))
        chosen["s3"] = self._requested_s3_port if self._requested_s3_port is not None else free_port()
        chosen["admin"] = _admin_port()
        self.ports = chosen

    def _write_identities(self) -> Path:
        path = self.run_dir / "identities.json"
        identities = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path.write_text(json.dumps(identities))
        return path

    def _args(self, identities: Path) -> list[str]:
        p = self.ports
        return [
            venv_bin("weed"),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            # Stop in ~1 s instead of waiting for heartbeats to drain.
            "-volume.preStopSeconds=0",
            # Every bucket with data takes several volumes; left to itself weed
            # allows free disk / 128 MB of them, which a whole test run (a few
            # hundred buckets on one server) used up ("No writable volumes").
            # Volumes are not preallocated: a high cap costs no disk.
            "-volume.max=5000",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-admin.port={p['admin']}",
            "-admin.ui=false",
            "-webdav=false",
            # Sockets in our run dir, not shared /tmp names keyed by port.
            f"-filer.localSocket={self.run_dir / 'filer.sock'}",
            f"-s3.localSocket={self.run_dir / 's3.sock'}",
            *self.extra_args,
        ]

    def launch(self) -> None:
        """Start the process without waiting (see ``wait_ready``)."""
        if self.running:
            raise HarnessError(f"{self.name} is already running")
        if not self.ports:
            self._choose_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Volumes already on disk (a restart) must be back before reads work.
        self._volumes_on_disk = len(list(self.data_dir.rglob("*.dat")))
        identities = self._write_identities()
        if self._process is None:
            self._process = ManagedProcess(self.name, self._args(identities), log_path=self.log_path)
        self._process.start()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll until the S3 port answers and a signed ListBuckets succeeds."""
        assert self._process is not None
        wait_for_http(self.endpoint + "/", timeout=timeout, process=self._process)
        client = self.client()

        def signed_request_works() -> bool:
            try:
                client.list_buckets()
            except Exception:
                return False
            return True

        poll_until(
            signed_request_works,
            f"{self.name} to answer a signed ListBuckets",
            timeout=timeout,
            process=self._process,
        )
        poll_until(
            lambda: self._registered_volumes() >= self._volumes_on_disk,
            f"{self.name}'s volume server to report its {self._volumes_on_disk} volumes to the master",
            timeout=timeout,
            process=self._process,
        )

    def _registered_volumes(self) -> int:
        """How many volumes the master knows (-1 before any volume server registered)."""
        url = f"http://127.0.0.1:{self.ports['master']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                status = json.load(response)
        except (OSError, ValueError):
            return -1
        nodes = [
            node
            for dc in status.get("Topology", {}).get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        if not nodes:
            return -1
        return sum(int(node.get("Volumes", 0)) for node in nodes)

    def start(self, timeout: float = 60.0) -> SeaweedFS:
        """Start and wait until it serves signed S3 requests; returns self."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully (SIGTERM, SIGKILL after ``timeout``); data is kept."""
        if self._process is not None:
            self._process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL the server at once, as a crash would; data is kept."""
        if self._process is not None:
            self._process.kill()

    def restart(self, timeout: float = 60.0) -> SeaweedFS:
        """Stop (if running) and start again on the same ports and data."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop and delete the data directory (if the harness created it)."""
        if self._own_data_dir:
            # The data is about to go, so there is nothing to shut down cleanly.
            self.kill()
            remove_tree(self.data_dir)
        else:
            self.stop()
        if self._own_run_dir:
            remove_tree(self.run_dir)

    def client(self, **options: Any) -> Any:
        """A boto3 S3 client on this server (path style, us-east-1).

        ``options`` go to ``clients.boto3_client`` (``checksums=``, ...).
        """
        return boto3_client(self.endpoint, self.access_key, self.secret_key, **options)

    def direct(self) -> Any:
        """This thread's client on this server (as ``client()``), made once.

        For looking at the server and setting it up (listings, new buckets),
        which tests and helpers do thousands of times: a client costs 3 ms
        of CPU to make.  Never register event handlers on it: ``client()``
        gives a client of one's own.
        """
        made: dict[str, Any] = self._direct.__dict__.setdefault("clients", {})
        client = made.get(self.endpoint)
        if client is None:
            client = made[self.endpoint] = self.client()
        return client

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name``; returns the name."""
        self.direct().create_bucket(Bucket=name)
        return name

    def process(self) -> ManagedProcess | None:
        return self._process


_shared: list[SeaweedFS] = []
_shared_lock = threading.Lock()
_shared_extra_args: tuple[str, ...] = ()


def set_shared_extra_args(*args: str) -> None:
    """Extra ``weed mini`` arguments for the shared servers; call before their first use."""
    global _shared_extra_args
    with _shared_lock:
        if _shared:
            raise HarnessError("the shared SeaweedFS servers exist already")
        _shared_extra_args = tuple(args)


def _shared_servers(count: int) -> list[SeaweedFS]:
    with _shared_lock:
        while len(_shared) < count:
            _shared.append(
                SeaweedFS(name=f"shared-seaweedfs-{len(_shared) + 1}", extra_args=_shared_extra_args)
            )
        servers = _shared[:count]
        # Start the missing (or crashed) ones together: start-ups overlap.
        pending = [s for s in servers if not s.running]
        for server in pending:
            server.launch()
        for server in pending:
            server.wait_ready()
        return servers


def shared_seaweedfs() -> SeaweedFS:
    """The SeaweedFS shared by this test process (keys ``SHARED_*_KEY``).

    Don't stop or kill it; make your own ``SeaweedFS`` for fault tests.
    """
    return _shared_servers(1)[0]


def shared_seaweedfs_pair() -> tuple[SeaweedFS, SeaweedFS]:
    """Two distinct shared SeaweedFS servers (the first is ``shared_seaweedfs()``)."""
    first, second = _shared_servers(2)
    return first, second


@atexit.register
def _stop_shared() -> None:
    with _shared_lock:
        servers = list(_shared)
        _shared.clear()
    for server in servers:
        server.close()
