"""
The metadata store: the operations of L{IMetadataStore}.

Like buildbot's C{db/connector.py} + C{db/pool.py}: every public method hands
a function of a Connection to L{StoreRunner._transaction} (L{runner}) on
the store's own threads and returns a Deferred; the SQL lives in one module per
group of tables (buckets, objects, listing, multipart, usage).

Over 500 lines: it is the one class that implements L{IMetadataStore}, a
method of a few lines per operation of the interface; splitting it would only
split that list, the SQL being in the modules per group of tables already.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from sqlalchemy.engine import Connection
from twisted.internet.defer import Deferred
from zope.interface import implementer

from s3balance.store import (
    buckets,
    leases,
    listing,
    moves,
    multipart,
    objects,
    parts,
    replicas,
    usage,
    version_listing,
    versions,
)
from s3balance.store import lifecycle as lifecycle_sql
from s3balance.store import objects as object_sql
from s3balance.store import pauses as pause_sql
from s3balance.store import policies as policy_sql
from s3balance.store import quotas as quota_sql
from s3balance.store import rebalance as rebalance_sql
from s3balance.store.interfaces import (
    BackendUsage,
    BucketRecord,
    BucketUsage,
    CompletedUpload,
    Deletion,
    DrainRecord,
    IMetadataStore,
    JobPause,
    LeaseState,
    LifecycleVersion,
    ListPage,
    Location,
    MoveCandidate,
    MultipartRecord,
    ObjectRecord,
    OperationCounts,
    PartRecord,
    QueuedDeletion,
    Quota,
    RebalanceRecord,
    TagSet,
    UsageRecount,
    VersionPage,
    WriteIntent,
)
from s3balance.store.runner import UTC, StoreRunner


def _sync_config_buckets(
    conn: Connection, names: list[str], quotas: dict[str, Quota], now: datetime.datetime
) -> set[str]:
    """The configured buckets and their quotas; -> the buckets that have a quota now."""
    buckets.sync_config_buckets(conn, names, now)
    quota_sql.sync_config_quotas(conn, names, quotas)
    return quota_sql.quota_buckets(conn)


@implementer(IMetadataStore)
class MetadataStore(StoreRunner):
    """The metadata store (parameters: L{StoreRunner})."""

    # The buckets this store knows to have a quota: their writes are checked
    # (a bucket without one pays no lock).  Told by sync_config_buckets,
    # set_bucket_quota and bucket_usage (the daemon's periodic refresh, which
    # brings quotas set through another daemon).
    _quota_buckets: frozenset[str] = frozenset()

    def _know_quotas(self, names: Iterable[str]) -> None:
        self._quota_buckets = frozenset(names)

    # -- buckets --------------------------------------------------------------

    def sync_config_buckets(self, names: Sequence[str], quotas: Optional[Mapping[str, Quota]] = None) -> Deferred[None]:
        d = self._run(_sync_config_buckets, list(names), dict(quotas or {}), self._now())
        return d.addCallback(self._know_quotas)

    def list_buckets(self) -> Deferred[list[BucketRecord]]:
        return self._read(buckets.list_buckets)

    def get_bucket(self, name: str) -> Deferred[Optional[BucketRecord]]:
        return self._read(buckets.get_bucket, name)

    def set_bucket_tags(self, name: str, tags: TagSet) -> Deferred[bool]:
        return self._run(buckets.set_bucket_tags, name, tuple(tags))

    def create_bucket(
        self, name: str, owner: Optional[str] = None, acl: Optional[str] = None, object_lock: Optional[str] = None
    ) -> Deferred[BucketRecord]:
        return self._run(buckets.create_bucket, name, self._now(), owner, acl, object_lock)

    def set_bucket_acl(self, name: str, acl: Optional[str]) -> Deferred[bool]:
        return self._run(buckets.set_bucket_acl, name, acl)

    def set_bucket_owner(self, name: str, owner: Optional[str]) -> Deferred[bool]:
        return self._run(buckets.set_bucket_owner, name, owner)

    # -- lifecycle (store/lifecycle.py) -----------------------------------------

    def set_bucket_lifecycle(self, name: str, text: Optional[str]) -> Deferred[bool]:
        return self._run(lifecycle_sql.set_bucket_lifecycle, name, text)

    def get_bucket_lifecycle(self, name: str) -> Deferred[Optional[str]]:
        return self._read(lifecycle_sql.get_bucket_lifecycle, name)

    def lifecycle_buckets(self) -> Deferred[list[tuple[str, str]]]:
        return self._read(lifecycle_sql.lifecycle_buckets)

    def lifecycle_page(self, bucket: str, prefix: str, after: str, limit: int) -> Deferred[list[ObjectRecord]]:
        return self._read(lifecycle_sql.lifecycle_page, bucket, prefix, after, limit)

    def lifecycle_versions_page(
        self, bucket: str, prefix: str, after_key: str, after_id: int, limit: int
    ) -> Deferred[list[LifecycleVersion]]:
        return self._read(lifecycle_sql.lifecycle_versions_page, bucket, prefix, after_key, after_id, limit)

    def expire_version(self, bucket: str, version: LifecycleVersion) -> Deferred[Deletion]:
        return self._run(lifecycle_sql.expire_version, bucket, version, self._now(), self.deletion_grace)

    # -- bucket policies and Block Public Access (store/policies.py) -------------

    def set_bucket_policy(self, name: str, text: Optional[str]) -> Deferred[bool]:
        return self._run(policy_sql.set_bucket_policy, name, text)

    def set_public_access_block(self, name: str, text: Optional[str]) -> Deferred[bool]:
        return self._run(policy_sql.set_public_access_block, name, text)

    def delete_bucket(self, name: str) -> Deferred[int]:
        return self._run(multipart.delete_bucket, name, self._now())

    # -- virtual buckets' usage and quotas -------------------------------------

    def bucket_usage(self) -> Deferred[list[BucketUsage]]:
        def learn(rows: list[BucketUsage]) -> list[BucketUsage]:
            self._know_quotas(row.bucket for row in rows if row.quota.limited)
            return rows

        return self._read(quota_sql.bucket_usage).addCallback(learn)

    def recount_bucket_usage(self, name: str) -> Deferred[UsageRecount]:
        return self._run(quota_sql.recount_usage, name)

    def set_bucket_quota(self, name: str, max_bytes: Optional[int], max_objects: Optional[int]) -> Deferred[BucketUsage]:
        def learn(row: BucketUsage) -> BucketUsage:
            known = self._quota_buckets - {name}
            self._know_quotas(known | {name} if row.quota.limited else known)
            return row

        return self._run(quota_sql.set_bucket_quota, name, Quota(max_bytes, max_objects)).addCallback(learn)

    # -- writes ---------------------------------------------------------------

    def begin_write(
        self,
        backend: str,
        real_key: str,
        lease_seconds: float,
        size: int = 0,
        max_size: Optional[int] = None,
        bucket: Optional[str] = None,
        objects: int = 0,
    ) -> Deferred[WriteIntent]:
        # Not durable: see _transaction.  The commit of the object is.  The
        # lease is counted from the database's clock (clock.database_time).
        return self._run(
            object_sql.begin_write,
            backend,
            real_key,
            lease_seconds,
            self._now(),
            size,
            max_size,
            bucket,
            objects,
            bucket in self._quota_buckets,
            durable=False,
            raw=True,
        )

    def grow_write(
        self, intent_id: int, backend: str, size: int, max_size: Optional[int] = None, bucket: Optional[str] = None
    ) -> Deferred[None]:
        return self._run(
            objects.grow_write, intent_id, backend, size, max_size, bucket, bucket in self._quota_buckets
        )

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
        also: Sequence[int] = (),
    ) -> Deferred[ObjectRecord]:
        return self._run(
            objects.commit_object, intent_id, record, if_match, if_none_match, self._now(), self.deletion_grace,
            tuple(also), raw=True,
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

    def set_object_tags(self, bucket: str, key: str, tags: TagSet) -> Deferred[bool]:
        return self._run(objects.set_object_tags, bucket, key, tuple(tags))

    def set_object_acl(self, bucket: str, key: str, acl: Optional[str]) -> Deferred[bool]:
        return self._run(objects.set_object_acl, bucket, key, acl)

    def delete_object(
        self,
        bucket: str,
        key: str,
        expected: Optional[ObjectRecord] = None,
        version_id: Optional[str] = None,
        bypass_governance: bool = False,
    ) -> Deferred[Deletion]:
        return self._run(
            objects.delete_object, bucket, key, self._now(), self.deletion_grace, expected, version_id,
            bypass_governance,
        )

    def delete_objects(
        self, bucket: str, items: Sequence[tuple[str, Optional[str]]], bypass_governance: bool = False
    ) -> Deferred[dict[tuple[str, Optional[str]], Deletion]]:
        return self._run(
            objects.delete_objects, bucket, list(items), self._now(), self.deletion_grace, bypass_governance
        )

    def set_retention(
        self,
        bucket: str,
        key: str,
        version_id: Optional[str],
        mode: Optional[str],
        until: Optional[datetime.datetime],
        bypass_governance: bool = False,
    ) -> Deferred[Optional[ObjectRecord]]:
        return self._run(versions.set_retention, bucket, key, version_id, mode, until, self._now(), bypass_governance)

    def set_legal_hold(
        self, bucket: str, key: str, version_id: Optional[str], on: bool
    ) -> Deferred[Optional[ObjectRecord]]:
        return self._run(versions.set_legal_hold, bucket, key, version_id, on)

    def set_object_lock(self, name: str, text: str) -> Deferred[Optional[str]]:
        return self._run(versions.set_object_lock, name, text)

    def set_bucket_versioning(self, name: str, status: str) -> Deferred[bool]:
        return self._run(versions.set_versioning, name, status)

    def get_version(self, bucket: str, key: str, version_id: Optional[str]) -> Deferred[Optional[ObjectRecord]]:
        return self._read(versions.get_version, bucket, key, version_id)

    def set_version_tags(self, bucket: str, key: str, version_id: str, tags: TagSet) -> Deferred[Optional[bool]]:
        return self._run(versions.set_version_tags, bucket, key, version_id, tuple(tags))

    def set_version_acl(
        self, bucket: str, key: str, version_id: str, acl: Optional[str]
    ) -> Deferred[Optional[bool]]:
        return self._run(versions.set_version_acl, bucket, key, version_id, acl)

    def list_versions(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, version_id_marker: Optional[str],
        max_keys: int,
    ) -> Deferred[VersionPage]:
        return self._read(version_listing.list_versions, bucket, prefix, delimiter, key_marker, version_id_marker, max_keys)

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

    def pause_job(
        self, job: str, paused_by: Optional[str] = None, reason: Optional[str] = None
    ) -> Deferred[JobPause]:
        return self._run(pause_sql.pause_job, job, paused_by, reason, self._now())

    def resume_job(self, job: str) -> Deferred[bool]:
        return self._run(pause_sql.resume_job, job)

    def paused_jobs(self) -> Deferred[list[JobPause]]:
        return self._read(pause_sql.paused_jobs)

    def postpone_deletions(self, backend: str, delay_seconds: float) -> Deferred[int]:
        return self._run(objects.postpone_deletions, backend, self._now(), self._in(delay_seconds))

    def add_backend_usage(self, deltas: dict[str, tuple[int, int]]) -> Deferred[list[BackendUsage]]:
        return self._run(usage.add_backend_usage, dict(deltas))

    def stored_backend_usage(self) -> Deferred[list[BackendUsage]]:
        return self._read(usage.stored_backend_usage)

    def reconcile_backend_usage(self) -> Deferred[list[BackendUsage]]:
        return self._run(usage.reconcile_backend_usage)


    # -- drains (s3balance.store.moves, s3balance.ops.drain) ----------------------

    def start_drain(self, backend: str, rate: Optional[int] = None) -> Deferred[DrainRecord]:
        return self._run(moves.start_drain, backend, rate, self._now())

    def set_drain_state(self, backend: str, state: str) -> Deferred[Optional[DrainRecord]]:
        return self._run(moves.set_drain_state, backend, state, self._now())

    def set_drain_rate(self, backend: str, rate: Optional[int]) -> Deferred[Optional[DrainRecord]]:
        return self._run(moves.set_drain_rate, backend, rate, self._now())

    def cancel_drain(self, backend: str) -> Deferred[Optional[DrainRecord]]:
        return self._run(moves.cancel_drain, backend)

    def drains(self) -> Deferred[list[DrainRecord]]:
        return self._read(moves.drains)

    def drain_candidates(self, backend: str, after: int, limit: int) -> Deferred[list[MoveCandidate]]:
        return self._read(moves.drain_candidates, backend, after, limit)

    def switch_location(self, intent_id: int, candidate: MoveCandidate, target: Location) -> Deferred[str]:
        return self._run(moves.switch_location, intent_id, candidate, target, self._now(), self.deletion_grace)

    def recount_drain(self, backend: str, blocked: Optional[int] = None) -> Deferred[Optional[DrainRecord]]:
        return self._run(moves.recount_drain, backend, self._now(), blocked)

    def note_drain_progress(
        self, backend: str, active_seconds: float, failed: int, error: Optional[str]
    ) -> Deferred[None]:
        return self._run(
            moves.note_drain_progress, backend, round(active_seconds * 1000), failed, error, self._now()
        )

    # -- the rebalance (s3balance.store.rebalance, s3balance.ops.rebalance) -------

    def start_rebalance(self, margin: float, rate: Optional[int] = None) -> Deferred[RebalanceRecord]:
        return self._run(rebalance_sql.start_rebalance, margin, rate, self._now())

    def rebalance(self) -> Deferred[Optional[RebalanceRecord]]:
        return self._read(rebalance_sql.get_rebalance)

    def set_rebalance_state(self, state: str, rate: Optional[int] = None) -> Deferred[Optional[RebalanceRecord]]:
        return self._run(rebalance_sql.set_rebalance_state, state, rate, self._now())

    def cancel_rebalance(self) -> Deferred[Optional[RebalanceRecord]]:
        return self._run(rebalance_sql.cancel_rebalance, self._now())

    def note_rebalance_progress(
        self,
        active_seconds: float,
        failed: int,
        error: Optional[str],
        spread: Optional[float] = None,
        remaining_bytes: Optional[int] = None,
        finished: bool = False,
    ) -> Deferred[Optional[RebalanceRecord]]:
        return self._run(
            rebalance_sql.note_rebalance_progress,
            round(active_seconds * 1000), failed, error, spread, remaining_bytes, finished, self._now(),
        )

    def rebalance_switch(self, intent_id: int, candidate: MoveCandidate, target: Location) -> Deferred[str]:
        return self._run(
            rebalance_sql.rebalance_switch, intent_id, candidate, target, self._now(), self.deletion_grace
        )

    def backends_in_use(self, names: Sequence[str]) -> Deferred[list[str]]:
        return self._read(moves.backends_in_use, list(names))

    def add_location(self, intent_id: int, record: ObjectRecord, source: Location, target: Location) -> Deferred[str]:
        return self._run(replicas.add_location, intent_id, record, source, target, self._now())

    def drop_location(self, record: ObjectRecord, location: Location) -> Deferred[bool]:
        return self._run(replicas.drop_location, record, location, self._now())

    def under_replicated(
        self, bucket: str, replicas_wanted: int, after: int, limit: int, backends: Optional[Sequence[str]] = None
    ) -> Deferred[tuple[list[ObjectRecord], int]]:
        return self._read(
            replicas.under_replicated, bucket, replicas_wanted, after, limit, None if backends is None else tuple(backends)
        )
