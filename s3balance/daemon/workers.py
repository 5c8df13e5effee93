"""
Multi-process mode (C{server.workers: N}).

One Python process saturates one core on small-object traffic.  With N
workers the daemon (the twistd process) and N-1 worker processes each open
their own listening socket on the same address with C{SO_REUSEPORT}; the
kernel spreads connections over them.  They share the one metadata database
(PostgreSQL or MariaDB for real deployments; SQLite works too, in WAL mode,
with its writers serialized).  Work the cluster needs once (deletions, the
stale-upload cleaner, the usage reconcile) runs in the one process holding
the job's lease in the database (s3balance.ops.background.ElectedRepeater; each
worker is a holder of its own); what each process counts itself (usage
changes, operation counts) it adds to the database.

The twistd process is the supervisor: it starts the workers, restarts one
that dies, forwards SIGHUP to them, and stops them (they drain like it does)
when it stops.  Workers die with it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Generator
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger

from s3balance.ops.background import Repeater

log = Logger()


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class WorkerSupervisor(Service):
    """Keeps C{count} worker processes running C{python -m s3balance.daemon.worker_process CONFIG INDEX}."""

    def __init__(self, config_path: str, count: int, grace: float, reactor: Any, cwd: Optional[str] = None) -> None:
        self.config_path = os.path.abspath(config_path)
        self.count = count
        self.grace = grace
        self.reactor = reactor
        self.cwd = cwd or os.getcwd()
        self.children: dict[int, subprocess.Popen] = {}
        self._watch = Repeater("worker-watch", 1.0, self._check, reactor)

    def _spawn(self, index: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.children[index] = subprocess.Popen(
            [sys.executable, "-m", "s3balance.daemon.worker_process", self.config_path, str(index)],
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.info("started worker {index} (pid {pid})", index=index, pid=self.children[index].pid)

    def startService(self) -> None:
        super().startService()
        for index in range(1, self.count):
            self._spawn(index)
        self._watch.startService()

    def _check(self) -> None:
        for index, child in list(self.children.items()):
            code = child.poll()
            if code is not None and self.running:
                log.warn("worker {index} exited with status {code}; restarting it", index=index, code=code)
                self._spawn(index)

    def signal_all(self, signum: int) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signum)

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[Any], Any, None]:
        super().stopService()
        yield self._watch.stopService()
        self.signal_all(signal.SIGTERM)
        waited = 0.0
        while any(child.poll() is None for child in self.children.values()) and waited < self.grace + 5:
            yield deferLater(self.reactor, 0.1, lambda: None)
            waited += 0.1
        self.signal_all(signal.SIGKILL)
