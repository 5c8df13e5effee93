"""
The metadata store: the operations of L{IMetadataStore}.

Like buildbot's C{db/connector.py} + C{db/pool.py}: every public method hands
a function of a Connection to L{StoreRunner._transaction} (L{runner}) on
the store's own threads and returns a Deferred; the SQL lives in one module per
group of tables (buckets, objects, listing, multipart, usage).
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from twisted.internet.defer import Deferred
from zope.interface import implementer

from s3balance.store import buckets, leases, listing, migrate, multipart, objects, parts, usage
from s3balance.store.interfaces import (
    BackendUsage,
    BucketRecord,
    CompletedUpload,
    IMetadataStore,
    LeaseState,
    ListPage,
    MultipartRecord,
    ObjectRecord,
    OperationCounts,
    PartRecord,
    QueuedDeletion,
    WriteIntent,
)
from s3balance.store.runner import UTC, StoreRunner

# Re-exported for the admin CLI ("s3balance-admin db upgrade").
upgrade = migrate.upgrade
current_revision = migrate.current_revision


@implementer(IMetadataStore)
class MetadataStore(StoreRunner):
    """The metadata store (parameters: L{StoreRunner})."""

    # -- buckets --------------------------------------------------------------

    def sync_config_buckets(self, names: Sequence[str]) -> Deferred[None]:
        return self._run(buckets.sync_config_buckets, list(names), self._now())

    def list_buckets(self) -> Deferred[list[BucketRecord]]:
        return self._read(buckets.list_buckets)

    def get_bucket(self, name: str) -> Deferred[Optional[BucketRecord]]:
        return self._read(buckets.get_bucket, name)

    def create_bucket(self, name: str) -> Deferred[BucketRecord]:
        return self._run(buckets.create_bucket, name, self._now())

    def delete_bucket(self, name: str) -> Deferred[int]:
        return self._run(multipart.delete_bucket, name, self._now())

    # -- writes ---------------------------------------------------------------

    def begin_write(
        self, backend: str, real_key: str, lease_seconds: float, size: int = 0, max_size: Optional[int] = None
    ) -> Deferred[WriteIntent]:
        # Not durable: see _transaction.  The commit of the object is.  The
        # lease is counted from the database's clock (clock.database_time).
        return self._run(
            objects.begin_write,
            backend,
            real_key,
            lease_seconds,
            self._now(),
            size,
            max_size,
            durable=False,
            raw=True,
        )

    def grow_write(
        self, intent_id: int, backend: str, size: int, max_size: Optional[int] = None
    ) -> Deferred[None]:
        return self._run(objects.grow_write, intent_id, backend, size, max_size)

    def record_part(self, intent_id: int, upload_id: str, size: int) -> Deferred[None]:
        return self._run(multipart.record_part, intent_id, upload_id, size, self._now())

    def touch_multipart(self, upload_id: str) -> Deferred[None]:
        return self._run(multipart.touch_multipart, upload_id, self._now())

    def renew_write(self, intent_id: int, lease_seconds: float) -> Deferred[None]:
        return self._run(objects.renew_write, intent_id, lease_seconds)

    def abandon_write(self, intent_id: int, backend_object_may_exist: bool) -> Deferred[None]:
        return self._run(objects.abandon_write, intent_id, backend_object_may_exist, self._now(), raw=True)

    def commit_object(
        self,
        intent_id: int,
        record: ObjectRecord,
        if_match: Optional[str] = None,
        if_none_match: Optional[str] = None,
    ) -> Deferred[ObjectRecord]:
        return self._run(
            objects.commit_object, intent_id, record, if_match, if_none_match, self._now(), self.deletion_grace, raw=True
        )

    def get_object(self, bucket: str, key: str) -> Deferred[Optional[ObjectRecord]]:
        if self._raw_statements is not None and self._pool is not None:
            return self._bounded(self._pool.submit(self._raw_get_object, bucket, key))
        if self._pg_raw_dialect is not None and self._pool is not None:
            return self._bounded(
                self._pool.submit(self._pooled_transaction, objects.get_object, (bucket, key), True, True)
            )
        return self._read(objects.get_object, bucket, key, single=True)

    def _raw_get_object(self, bucket: str, key: str) -> Optional[ObjectRecord]:
        """On the pool: the lookup without SQLAlchemy (no BEGIN: one SELECT); any trouble takes the ordinary path."""
        try:
            conn: Any = self._raw_conn()  # stands in for a Connection (rawread.py)
            return objects.get_object(conn, bucket, key)
        except sqlite3.Error as e:
            # Busy, I/O error, ...: the ordinary path retries and reports.
            self.log.debug("raw read failed ({error}); using the ordinary path", error=str(e))
            self._drop_raw_connection()
        return self._transaction(objects.get_object, bucket, key, write=False, single=True)

    def delete_object(self, bucket: str, key: str) -> Deferred[Optional[ObjectRecord]]:
        return self._run(objects.delete_object, bucket, key, self._now(), self.deletion_grace)

    def delete_objects(self, bucket: str, keys: list[str]) -> Deferred[dict[str, Optional[ObjectRecord]]]:
        return self._run(objects.delete_objects, bucket, keys, self._now(), self.deletion_grace)

    def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        max_keys: int = 1000,
    ) -> Deferred[ListPage]:
        return self._read(listing.list_objects, bucket, prefix, delimiter, after, max_keys)

    # -- cleanup --------------------------------------------------------------

    def expired_writes(self, limit: int = 100) -> Deferred[int]:
        return self._run(objects.expired_writes, self._now(), limit)

    def queued_deletions(self, limit: int = 100) -> Deferred[list[QueuedDeletion]]:
        return self._read(objects.queued_deletions, self._now(), limit)

    def finish_deletion(self, deletion_id: int) -> Deferred[None]:
        return self._run(objects.finish_deletion, deletion_id)

    def is_referenced(self, backend: str, real_key: str) -> Deferred[bool]:
        return self._read(objects.is_referenced, backend, real_key)

    def retry_deletion_later(self, deletion_id: int, delay_seconds: float) -> Deferred[None]:
        return self._run(objects.retry_deletion_later, deletion_id, self._in(delay_seconds))

    # -- usage and operation counters -----------------------------------------

    def backend_usage(self) -> Deferred[list[BackendUsage]]:
        return self._read(usage.backend_usage)

    def count_operations(
        self,
        backend: str,
        type_a_delta: int,
        type_b_delta: int,
        when: Optional[datetime.datetime] = None,
    ) -> Deferred[None]:
        month = (when or self._now()).astimezone(UTC).strftime("%Y-%m")
        return self._run(usage.count_operations, backend, month, type_a_delta, type_b_delta)

    def operation_counts(self, month: str) -> Deferred[list[OperationCounts]]:
        return self._read(usage.operation_counts, month)

    # -- multipart ------------------------------------------------------------

    def create_multipart(self, record: MultipartRecord, intent_id: Optional[int] = None) -> Deferred[None]:
        return self._run(multipart.create_multipart, record, intent_id)

    def get_multipart(self, upload_id: str) -> Deferred[Optional[MultipartRecord]]:
        return self._read(multipart.get_multipart, upload_id)

    def list_multipart(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> Deferred[list[MultipartRecord]]:
        return self._read(multipart.list_multipart, bucket, prefix, key_marker, upload_id_marker, max_uploads)

    def list_multipart_page(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> Deferred[ListPage]:
        return self._read(
            multipart.list_multipart_page, bucket, prefix, delimiter, key_marker, upload_id_marker, max_uploads
        )

    def complete_multipart(
        self,
        upload_id: str,
        record: ObjectRecord,
        if_match: Optional[str] = None,
        if_none_match: Optional[str] = None,
        object_parts: Sequence[PartRecord] = (),
    ) -> Deferred[ObjectRecord]:
        return self._run(
            multipart.complete_multipart,
            upload_id,
            record,
            self._now(),
            self.deletion_grace,
            if_match,
            if_none_match,
            object_parts,
        )

    def record_part_checksums(
        self, upload_id: str, number: int, size: int, etag: str, checksums: Mapping[str, str]
    ) -> Deferred[None]:
        return self._run(parts.record_part, upload_id, number, size, etag, checksums)

    def multipart_parts(self, upload_id: str) -> Deferred[list[PartRecord]]:
        return self._read(parts.parts_of, upload_id)

    def completed_upload(self, upload_id: str) -> Deferred[Optional[CompletedUpload]]:
        return self._read(parts.completed_upload, upload_id, self._now())

    def object_parts_page(
        self, real_key: str, marker: int, max_parts: int
    ) -> Deferred[tuple[list[PartRecord], bool]]:
        return self._read(parts.object_parts_page, real_key, marker, max_parts)

    def abort_multipart(
        self, upload_id: str, queue_backend_abort: bool
    ) -> Deferred[Optional[MultipartRecord]]:
        return self._run(multipart.abort_multipart, upload_id, queue_backend_abort, self._now())

    def stale_multipart(
        self, older_than: datetime.datetime, limit: int = 100
    ) -> Deferred[list[MultipartRecord]]:
        return self._read(multipart.stale_multipart, older_than, limit)

    # -- cluster-wide background jobs (s3balance.ops.background) -----------------

    def acquire_lease(self, job: str, holder: str, seconds: float) -> Deferred[bool]:
        return self._run(leases.acquire_lease, job, holder, seconds)

    def release_lease(self, job: str, holder: str) -> Deferred[bool]:
        return self._run(leases.release_lease, job, holder)

    def lease_state(self, job: str) -> Deferred[Optional[LeaseState]]:
        return self._read(leases.lease_state, job)

    def postpone_deletions(self, backend: str, delay_seconds: float) -> Deferred[int]:
        return self._run(objects.postpone_deletions, backend, self._now(), self._in(delay_seconds))

    def add_backend_usage(self, deltas: dict[str, tuple[int, int]]) -> Deferred[list[BackendUsage]]:
        return self._run(usage.add_backend_usage, dict(deltas))

    def stored_backend_usage(self) -> Deferred[list[BackendUsage]]:
        return self._read(usage.stored_backend_usage)

    def reconcile_backend_usage(self) -> Deferred[list[BackendUsage]]:
        return self._run(usage.reconcile_backend_usage)

