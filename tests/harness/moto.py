"""moto's S3 server mode on 127.0.0.1 for integration tests.

moto accepts any signature and keeps everything in memory: ``restart()`` and
``kill()`` then ``start()`` give the same endpoint but an empty server.
``shared_moto()`` starts once per test process and stops at exit.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from .clients import boto3_client
from .process import HarnessError, ManagedProcess, free_port, harness_dir, venv_bin, wait_for_http

__all__ = ["MotoServer", "shared_moto"]

_ids = iter(range(1, 1_000_000))
_ids_lock = threading.Lock()


class MotoServer:
    """One ``moto_server`` process; same surface as ``SeaweedFS``."""

    def __init__(
        self,
        access_key: str = "testing",
        secret_key: str = "testing",
        *,
        name: str | None = None,
        port: int | None = None,
    ) -> None:
        with _ids_lock:
            number = next(_ids)
        self.name = name or f"moto-{number}"
        self.access_key = access_key
        self.secret_key = secret_key
        self._port = port
        self._process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"<MotoServer {self.name} port={self._port}>"

    @property
    def port(self) -> int:
        if self._port is None:
            raise HarnessError(f"{self.name} has not been started")
        return self._port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def launch(self) -> None:
        if self.running:
            raise HarnessError(f"{self.name} is already running")
        if self._port is None:
            self._port = free_port()
        if self._process is None:
            self._process = ManagedProcess(
                self.name,
                [venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self._port)],
                log_path=harness_dir() / f"{self.name}.log",
            )
        self._process.start()

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self._process is not None
        wait_for_http(
            self.endpoint + "/moto-api/",
            timeout=timeout,
            process=self._process,
            accept=lambda status: status < 500,
        )

    def start(self, timeout: float = 60.0) -> MotoServer:
        self.launch()
        self.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            self._process.stop(timeout)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()

    def restart(self, timeout: float = 60.0) -> MotoServer:
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        self.stop()

    def client(self, **options: Any) -> Any:
        return boto3_client(self.endpoint, self.access_key, self.secret_key, **options)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


_shared: list[MotoServer] = []
_shared_lock = threading.Lock()


def shared_moto() -> MotoServer:
    """The moto server shared by this test process (started on first use)."""
    with _shared_lock:
        if not _shared:
            _shared.append(MotoServer(name="shared-moto"))
        server = _shared[0]
        if not server.running:
            server.start()
        return server


@atexit.register
def _stop_shared() -> None:
    with _shared_lock:
        servers = list(_shared)
        _shared.clear()
    for server in servers:
        server.stop()
