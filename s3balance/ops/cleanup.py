"""
Background work that keeps backends in line with the store, as
L{s3balance.ops.background} repeaters.

Once per cluster (L{ElectedRepeater}: the daemon holding the job's lease):

  - L{DeletionWorker} ("deleter") turns write intents whose lease ran out
    (the daemon died mid-upload) into queued deletions, then removes the
    backend copies the store has queued for deletion (replaced or deleted
    objects, abandoned writes, aborted multipart uploads): several at once,
    each within a time limit, skipping backends the health checks mark down.
  - L{StaleUploadCleaner} ("stale-uploads") aborts multipart uploads idle past
    C{balancer.multipart_max_age}.
  - L{UsageReconciler} ("usage-reconcile") replaces the stored per-backend
    usage with the aggregate of the locations, now and then.

In every daemon (L{Repeater}):

  - L{UsageRefresher} adds what this daemon's writes and deletes changed to
    the stored usage and reads back the cluster's totals (a few rows).
  - L{OperationSync} adds this daemon's operation counts to the store.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, inlineCallbacks
from twisted.logger import Logger

from s3balance.backends.backend import BackendError
from s3balance.ops.background import LEASE_SECONDS, BackgroundMetrics, ElectedRepeater, Repeater, holder_id
from s3balance.store.interfaces import StoreUnavailable

if TYPE_CHECKING:
    from s3balance.backends.backend import Backend
    from s3balance.backends.operations import OperationCounter
    from s3balance.backends.pool import BackendPool
    from s3balance.store.interfaces import BucketUsage, IMetadataStore, QueuedDeletion

log = Logger()

# Deletion reasons of writes that did not complete (see s3balance.store.objects).
UNFINISHED_WRITES = frozenset({"abandoned", "lease-expired"})

# Expected in outages; the next run tries again.
OUTAGES = (StoreUnavailable, BackendError)


class DeletionWorker(ElectedRepeater):
    BATCH = 100
    MAX_BACKOFF = 3600.0
    # Backend deletions in flight at once.
    CONCURRENCY = 8

    def __init__(
        self,
        store: IMetadataStore,
        pool: BackendPool,
        period: float,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        holder: Optional[str] = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        super().__init__(
            "deleter",
            period,
            clock=clock,
            metrics=metrics,
            quiet_errors=OUTAGES,
            store=store,
            holder=holder or holder_id(),
            lease_seconds=lease_seconds,
        )
        self.pool = pool

    def item_timeout(self) -> float:
        """Seconds one queued deletion may take (a few backend requests, each bounded by the backend's timeout)."""
        timeouts = [getattr(self.pool.get(name), "timeout", 60.0) for name in self.pool.names()]
        return 3 * max(timeouts, default=60.0)

    @inlineCallbacks
    def run(self) -> Generator[Deferred[Any], Any, None]:
        yield self.store.expired_writes(self.BATCH)
        for name in self.pool.names():
            if not self.pool.is_up(name):
                # Its queue waits (attempts unchanged) instead of filling every batch.
                postponed = yield self.store.postpone_deletions(name, max(self.period, 5.0) * 5)
                if postponed:
                    log.info("{count} deletion(s) on {backend} wait: the backend is down", count=postponed, backend=name)
        limit = DeferredSemaphore(self.CONCURRENCY)
        while self.keep_going():
            due = yield self.store.queued_deletions(self.BATCH)
            if not due:
                return
            # Every deletion of the batch settles before the run goes on or
            # ends (a run never overlaps the next one); the first error (the
            # store's: StoreUnavailable ...) is then the run's.
            outcomes = yield DeferredList(
                [limit.run(self._delete_one, item) for item in due], consumeErrors=True
            )
            for ok, result in outcomes:
                if not ok:
                    result.raiseException()
            done = [result for _, result in outcomes]
            if not any(done) or len(due) < self.BATCH:
                return

    @inlineCallbacks
    def _delete_one(self, item: QueuedDeletion) -> Generator[Deferred[Any], Any, bool]:
        """Carry out one queued deletion; True when it left the queue."""
        if not self.keep_going():
            return False
        backend = self.pool.get(item.backend)
        if backend is None:
            # Removed from the config: keep the row until it comes back.
            yield self.store.retry_deletion_later(item.id, self.MAX_BACKOFF)
            return False
        if not self.pool.is_up(item.backend):
            return False  # postponed at the next run
        # Never delete what a live record refers to (see
        # objects.is_referenced): the queued entry is simply dropped.
        referenced = yield self.store.is_referenced(item.backend, item.real_key)
        try:
            yield self._on_backend(backend, item, referenced).addTimeout(self.item_timeout(), self.clock)
        except BackendError as error:
            yield self._retry_later(item, str(error))
            return False
        except Exception as error:
            if not self.keep_going():
                return False
            # The time limit (TimeoutError) or the connection cut under it.
            yield self._retry_later(item, f"{type(error).__name__}: {error}")
            return False
        yield self.store.finish_deletion(item.id)
        return True

    @inlineCallbacks
    def _on_backend(
        self, backend: Backend, item: QueuedDeletion, referenced: bool
    ) -> Generator[Deferred[Any], Any, None]:
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
                # A write that never finished may have been a multipart
                # upload (PUT of unknown length).  The listing is of one
                # real key's uploads: one page, at most 1000 entries.
                for upload_id in (yield backend.multipart_uploads_of(item.real_key)):
                    yield backend.abort_multipart(item.real_key, upload_id)
            yield backend.delete_object(item.real_key)

    def _retry_later(self, item: QueuedDeletion, error: str) -> Deferred[None]:
        delay = min(self.MAX_BACKOFF, 5.0 * 2 ** min(item.attempts, 10))
        log.warn(
            "deleting {backend}/{key} failed ({error}); retry in {delay}s",
            backend=item.backend,
            key=item.real_key,
            error=error,
            delay=delay,
        )
        return self.store.retry_deletion_later(item.id, delay)


class StaleUploadCleaner(ElectedRepeater):
    """Multipart uploads idle past their age are aborted on their backend and forgotten."""

    BATCH = 100

    def __init__(
        self,
        store: IMetadataStore,
        period: float,
        multipart_max_age: float,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        holder: Optional[str] = None,
        lease_seconds: float = LEASE_SECONDS,
        deleter: Optional[DeletionWorker] = None,
    ) -> None:
        super().__init__(
            "stale-uploads",
            period,
            clock=clock,
            metrics=metrics,
            quiet_errors=OUTAGES,
            store=store,
            holder=holder or holder_id(),
            lease_seconds=lease_seconds,
        )
        self.multipart_max_age = multipart_max_age
        self.deleter = deleter

    @inlineCallbacks
    def run(self) -> Generator[Deferred[Any], Any, None]:
        now = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)
        older_than = now - datetime.timedelta(seconds=self.multipart_max_age)
        aborted = 0
        while self.keep_going():
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
                aborted += 1
            if len(stale) < self.BATCH:
                break
        if aborted and self.deleter is not None:
            # Their backend aborts are queued deletions.
            self.deleter.kick()


class UsageRefresher(Repeater):
    """
    Per-backend usage in the pool, cluster-wide, without aggregating the
    locations: every C{period} this daemon adds what its own writes and
    deletes changed since the last time (the pool's usage moved by the
    request path, minus what it was set to) to the stored usage and sets the
    pool to the totals that come back, plus whatever changed meanwhile.

    With C{on_bucket_usage}, it also reads every virtual bucket's usage and
    quota (exact in the store: a few small aggregates) and hands them to it
    (the gateway's view for the metrics and the status page; the store learns
    from them which buckets have a quota).
    """

    def __init__(
        self,
        store: IMetadataStore,
        pool: BackendPool,
        period: float,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        on_bucket_usage: Optional[Callable[[list[BucketUsage]], None]] = None,
    ) -> None:
        super().__init__("usage", period, clock=clock, metrics=metrics, quiet_errors=OUTAGES)
        self.store = store
        self.pool = pool
        self.on_bucket_usage = on_bucket_usage
        # What the pool was set to from the store, per backend.
        self._set: dict[str, tuple[int, int]] = {}

    def _local_changes(self) -> dict[str, tuple[int, int]]:
        changes = {}
        for name in self.pool.names():
            used, count = self.pool.usage(name)
            was_used, was_count = self._set.get(name, (0, 0))
            if (used, count) != (was_used, was_count):
                changes[name] = (used - was_used, count - was_count)
        return changes

    @inlineCallbacks
    def run(self) -> Generator[Deferred[Any], Any, None]:
        before = {name: self.pool.usage(name) for name in self.pool.names()}
        totals = yield self.store.add_backend_usage(self._local_changes())
        stored = {row.backend: (row.used_bytes, row.object_count) for row in totals}
        self._set = {}
        for name in self.pool.names():
            used, count = stored.get(name, (0, 0))
            self._set[name] = (used, count)
            # Requests that changed the pool while the store answered: kept
            # for the next run (the difference to what it is set to).
            now_used, now_count = self.pool.usage(name)
            then_used, then_count = before.get(name, (0, 0))
            self.pool.set_usage(name, used + now_used - then_used, count + now_count - then_count)
        if self.on_bucket_usage is not None:
            self.on_bucket_usage((yield self.store.bucket_usage()))


class UsageReconciler(ElectedRepeater):
    """The stored usage replaced by the aggregate of the locations (a full join: rare, one daemon)."""

    def __init__(
        self,
        store: IMetadataStore,
        period: float,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
        holder: Optional[str] = None,
        lease_seconds: float = LEASE_SECONDS,
        refresher: Optional[UsageRefresher] = None,
    ) -> None:
        super().__init__(
            "usage-reconcile",
            period,
            clock=clock,
            metrics=metrics,
            quiet_errors=OUTAGES,
            store=store,
            holder=holder or holder_id(),
            lease_seconds=lease_seconds,
        )
        self.refresher = refresher

    @inlineCallbacks
    def run(self) -> Generator[Deferred[Any], Any, None]:
        yield self.store.reconcile_backend_usage()
        if self.refresher is not None:
            self.refresher.kick()


class OperationSync(Repeater):
    """Adds this daemon's operation counts to the store and reads back the month's totals."""

    def __init__(
        self,
        counter: OperationCounter,
        period: float = 5.0,
        clock: Any = None,
        metrics: Optional[BackgroundMetrics] = None,
    ) -> None:
        super().__init__("operation-counts", period, clock=clock, metrics=metrics, quiet_errors=OUTAGES)
        self.counter = counter

    def run(self) -> Deferred[None]:
        return self.counter.sync()

    def stopService(self) -> Deferred:
        # One last write so a restart does not lose the counts.
        return super().stopService().addCallback(lambda _: self.counter.sync())
