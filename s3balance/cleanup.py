"""
Background work that keeps backends in line with the store:

  - L{DeletionWorker} removes backend copies the store has queued for
    deletion (replaced or deleted objects, abandoned writes, aborted
    multipart uploads) and turns write intents whose lease ran out (the
    daemon died mid-upload) into queued deletions.
  - L{UsageRefresher} recomputes per-backend usage from the store.

Both are services owning a LoopingCall, so they never overlap themselves and
stop with the daemon.
"""

from __future__ import annotations

import datetime

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from s3balance.backends.backend import BackendError
from s3balance.store.interfaces import StoreUnavailable

log = Logger()

# Deletion reasons of writes that did not complete (see s3balance.store.objects).
UNFINISHED_WRITES = frozenset({"abandoned", "lease-expired"})


class _PeriodicService(Service):
    """A service that runs C{run()} every C{period} seconds and on demand, never twice at once."""

    def __init__(self, period: float, clock=None) -> None:
        self.period = period
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self._loop: LoopingCall | None = None
        self._running: Deferred | None = None
        self._again = False

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.kick)
        self._loop.clock = self.clock
        self._loop.start(self.period, now=True)

    def stopService(self) -> Deferred | None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._running is not None:
            waiting: Deferred = Deferred()
            self._running.addBoth(lambda _: waiting.callback(None))
            return waiting
        return None

    def kick(self) -> None:
        """Run now, or once more right after the run in progress."""
        if not self.running:
            return
        if self._running is not None:
            self._again = True
            return
        self._running = self.run()
        self._running.addErrback(self._failed)

        def done(_):
            self._running = None
            if self._again and self.running:
                self._again = False
                self.kick()

        self._running.addBoth(done)

    def run(self) -> Deferred:
        raise NotImplementedError

    def _failed(self, failure) -> None:
        if failure.check(StoreUnavailable, BackendError):
            # Expected in outages; the next round tries again.
            log.warn("{name}: {error}; will retry", name=type(self).__name__, error=failure.getErrorMessage())
        else:
            log.failure("{name} failed", failure, name=type(self).__name__)


class DeletionWorker(_PeriodicService):
    BATCH = 100
    MAX_BACKOFF = 3600.0

    def __init__(self, store, pool, period: float, clock=None, multipart_max_age: float = 86400.0) -> None:
        super().__init__(period, clock)
        self.store = store
        self.pool = pool
        self.multipart_max_age = multipart_max_age

    @inlineCallbacks
    def run(self):
        yield self.store.expired_writes(self.BATCH)
        yield self._abort_stale_multipart()
        while self.running:
            due = yield self.store.queued_deletions(self.BATCH)
            if not due:
                return
            progressed = False
            for item in due:
                backend = self.pool.get(item.backend)
                if backend is None:
                    # Removed from the config: keep the row until it comes back.
                    yield self.store.retry_deletion_later(item.id, self.MAX_BACKOFF)
                    continue
                # Never delete what a live record refers to (see
                # objects.is_referenced): the queued entry is simply dropped.
                referenced = yield self.store.is_referenced(item.backend, item.real_key)
                try:
                    if item.backend_upload_id:
                        yield backend.abort_multipart(item.real_key, item.backend_upload_id)
                        # A complete that reached the backend after we gave up on
                        # it leaves the object behind; the upload never committed
                        # here, so nothing refers to its (unique) real key.
                        if not referenced:
                            yield backend.delete_object(item.real_key)
                    elif referenced:
                        log.warn(
                            "kept {backend}/{key}, queued for deletion ({reason}): a live record refers to it",
                            backend=item.backend,
                            key=item.real_key,
                            reason=item.reason,
                        )
                    else:
                        if item.reason in UNFINISHED_WRITES:
                            # A write that never finished may have been a
                            # multipart upload (PUT of unknown length).
                            for upload_id in (yield backend.multipart_uploads_of(item.real_key)):
                                yield backend.abort_multipart(item.real_key, upload_id)
                        yield backend.delete_object(item.real_key)
                except BackendError as error:
                    delay = min(self.MAX_BACKOFF, 5.0 * 2 ** min(item.attempts, 10))
                    log.warn(
                        "deleting {backend}/{key} failed ({error}); retry in {delay}s",
                        backend=item.backend,
                        key=item.real_key,
                        error=str(error),
                        delay=delay,
                    )
                    yield self.store.retry_deletion_later(item.id, delay)
                    continue
                yield self.store.finish_deletion(item.id)
                progressed = True
            if not progressed or len(due) < self.BATCH:
                return


    @inlineCallbacks
    def _abort_stale_multipart(self):
        """Multipart uploads idle past their age are aborted on their backend and forgotten."""
        now = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)
        older_than = now - datetime.timedelta(seconds=self.multipart_max_age)
        stale = yield self.store.stale_multipart(older_than, self.BATCH)
        for upload in stale:
            log.info(
                "aborting multipart upload {id} of {bucket}/{key}, idle since {initiated}",
                id=upload.upload_id,
                bucket=upload.bucket,
                key=upload.key,
                initiated=upload.initiated.isoformat(),
            )
            yield self.store.abort_multipart(upload.upload_id, True)


class UsageRefresher(_PeriodicService):
    def __init__(self, store, pool, period: float, clock=None) -> None:
        super().__init__(period, clock)
        self.store = store
        self.pool = pool

    @inlineCallbacks
    def run(self):
        usage = yield self.store.backend_usage()
        seen = set()
        for row in usage:
            self.pool.set_usage(row.backend, row.used_bytes, row.object_count)
            seen.add(row.backend)
        for name in self.pool.names():
            if name not in seen:
                self.pool.set_usage(name, 0, 0)


class OperationSync(_PeriodicService):
    """Adds this daemon's operation counts to the store and reads back the month's totals."""

    def __init__(self, counter, period: float = 5.0, clock=None) -> None:
        super().__init__(period, clock)
        self.counter = counter

    def run(self):
        return self.counter.sync()

    def stopService(self):
        # One last write so a restart does not lose the counts.
        waiting = super().stopService()
        if waiting is None:
            return self.counter.sync()
        return waiting.addCallback(lambda _: self.counter.sync())
