"""
The audit log's file, written without ever blocking the reactor.

The reactor thread only puts a finished line in a bounded queue
(L{AuditFile.write}: C{put_nowait}); one writer thread takes the lines out
and writes each with one C{write()} on a descriptor opened C{O_APPEND}.  So
the worker processes of C{server.workers} can share one file: the kernel
appends each line whole, never interleaved with another process's.  When
the queue is full (the disk is slower than the requests), the line is
dropped, counted in C{s3balance_audit_lines_dropped_total} and reported in
the log at most once per L{AuditFile.LOG_PERIOD}: a request never waits
for the audit log.

L{AuditFile.reopen} (every reload: SIGHUP, C{POST /admin/reload}) makes the
writer open the path again before its next line, so a rotated file (logrotate
renames it, then signals) is left behind and a new one started.  C{"-"} is
standard output (never reopened).
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from s3balance.config.error import ConfigError

__all__ = ["AuditFile", "open_audit_path"]

log = Logger()

STDOUT = "-"

# Queue items that are not lines: wake the writer (to reopen, or to stop).
_WAKE = b""


def open_audit_path(path: str) -> int:
    """A descriptor appending to C{path} (created 0640), or standard output's for C{"-"}."""
    if path == STDOUT:
        return 1
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


class AuditFile(Service):
    """
    The writer of the audit log: a bounded queue and one thread.

    The file is opened when this is made (so a path that cannot be written
    stops the daemon at start, naming C{audit.path}); the thread starts with
    the service and, when the service stops, writes what is queued (for up
    to L{STOP_WAIT} seconds) and closes the file.

    @param metrics: a L{s3balance.metrics.Metrics} (or None), for the count
        of dropped lines.
    """

    LOG_PERIOD = 60.0
    STOP_WAIT = 5.0

    def __init__(self, path: str, queue_size: int, reactor: Any, metrics: Any = None) -> None:
        self.path = path
        self.reactor = reactor
        self.metrics = metrics
        try:
            self._fd = open_audit_path(path)
        except OSError as error:
            raise ConfigError(f"audit.path: cannot open {path!r}: {error.strerror or error}") from None
        self.queue: queue.Queue[bytes] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.last_error: Optional[str] = None
        self._dropped_since_log = 0
        self._drop_logged_at: Optional[float] = None
        self._lock = threading.Lock()
        self._reopen_to: Optional[str] = None
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._stopped: Optional[Deferred[None]] = None

    # -- the reactor thread ---------------------------------------------------------

    def write(self, line: bytes) -> None:
        """Queue one line (ending in a newline); dropped and counted when the queue is full."""
        try:
            self.queue.put_nowait(line)
        except queue.Full:
            self.dropped_line()

    def dropped_line(self, count: int = 1) -> None:
        """Count lines that will never be written, and say so in the log now and then."""
        self.dropped += count
        if self.metrics is not None:
            self.metrics.audit_lines_dropped(count)
        self._dropped_since_log += count
        now = self.reactor.seconds()
        if self._drop_logged_at is None or now - self._drop_logged_at >= self.LOG_PERIOD:
            log.warn(
                "audit log {path}: dropped {count} line(s) (the writer is behind or failing: {error}; "
                "audit.queue_size is {size})",
                path=self.path,
                count=self._dropped_since_log,
                error=self.last_error or "queue full",
                size=self.queue.maxsize,
            )
            self._dropped_since_log = 0
            self._drop_logged_at = now

    def reopen(self, path: Optional[str] = None) -> None:
        """Open C{path} (by default the current one) again before the next line: after a rotation."""
        with self._lock:
            self._reopen_to = path or self.path
        self._wake()

    def _wake(self) -> None:
        try:
            self.queue.put_nowait(_WAKE)
        except queue.Full:
            pass  # the writer is busy: it sees the flag at its next line

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="s3balance-audit", daemon=True)
        self._thread.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._thread is None:
            return succeed(None)
        self._stopped = Deferred()
        self._stopping = True
        self._wake()
        stopped = self._stopped
        stopped.addTimeout(self.STOP_WAIT, self.reactor)
        stopped.addErrback(lambda _: log.warn("audit log {path}: lines still queued at stop", path=self.path))
        return stopped

    def _thread_done(self) -> None:
        self._thread = None
        if self._stopped is not None and not self._stopped.called:
            self._stopped.callback(None)

    # -- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            line = self.queue.get()
            self._reopen_if_asked()
            if line:
                try:
                    self._write_all(line)
                except OSError as error:
                    self.reactor.callFromThread(self._write_failed, error)
            if self._stopping and self.queue.empty():
                break
        if self.path != STDOUT:
            os.close(self._fd)
        self.reactor.callFromThread(self._thread_done)

    def _write_all(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            try:
                written = os.write(self._fd, view)
            except InterruptedError:
                continue
            view = view[written:]

    def _reopen_if_asked(self) -> None:
        with self._lock:
            path, self._reopen_to = self._reopen_to, None
        if path is None or path == STDOUT and self.path == STDOUT:
            return
        try:
            fd = open_audit_path(path)
        except OSError as error:
            self.reactor.callFromThread(self._reopen_failed, path, error)
            return
        old, self._fd = self._fd, fd
        if self.path != STDOUT:
            os.close(old)
        self.path = path

    def _reopen_failed(self, path: str, error: OSError) -> None:
        log.error(
            "audit log: cannot open {path} ({error}); still writing to {current}",
            path=path,
            error=error.strerror or str(error),
            current=self.path,
        )

    def _write_failed(self, error: OSError) -> None:
        self.last_error = error.strerror or str(error)
        self.dropped_line()
