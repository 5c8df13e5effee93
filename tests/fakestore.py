"""
L{MemoryStore}: the metadata store in memory, for tests.

An L{IMetadataStore} on plain dicts and lists: no SQL, no threads.  Every
method answers with a Deferred that has already fired, with the records and
the exceptions of the real store (L{s3balance.store.connector.MetadataStore}),
whose behaviour tests run on this one too (tests/test_store_contract.py).
Each call is one atomic step: one that fails has changed nothing.  Like the
real store it answers only between C{start()} and C{stop()} (RuntimeError
otherwise).

Two clocks, as with a database:

  - C{clock} (an IReactorTime: a L{twisted.internet.task.Clock} in tests, the
    reactor by default) stands in for the database's own clock
    (L{s3balance.store.clock.database_time}): write-intent and job leases
    are set and judged by its C{seconds()};
  - C{now}, the daemon's clock (when buckets, deletions and completions were
    made, when a queued deletion is due, the month of operation counters), by
    default C{clock}'s time as a UTC datetime.

Stores made on one L{MemoryTables} (C{tables=}) are daemons sharing one
database.  Not modelled: column limits (MariaDB's 1024-byte keys),
StoreUnavailable and request timeouts, races between transactions.  The ETag
preconditions are the real store's own (pure) function.

Over 500 lines (about 700): the interface has 44 methods, each written out
with the real store's signature and defaults (callers rely on both), in one
class over one set of tables; splitting it would scatter a model that is
read as a whole, and squeezing it would make the listings (folding, markers)
harder to check against the real store's.
"""

from __future__ import annotations

import datetime
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, Optional, ParamSpec, TypeVar, cast

import attr
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from s3balance.store import moves, replicas
from s3balance.store import pauses as pause_sql
from s3balance.store import rebalance as rebalance_sql
from s3balance.store.buckets import ORIGIN_API, ORIGIN_CONFIG
from s3balance.store.conditions import check_preconditions
from s3balance.store.deletion_queue import (
    REASON_ABANDONED,
    REASON_DELETED,
    REASON_LEASE_EXPIRED,
    REASON_MULTIPART_ABORTED,
    REASON_REPLACED,
)
from s3balance.store.interfaces import (
    BackendFull,
    BackendUsage,
    BucketExists,
    BucketNotEmpty,
    BucketRecord,
    BucketUsage,
    ConfigBucketError,
    ConfigQuotaError,
    Deletion,
    DrainRecord,
    DrainStateError,
    IMetadataStore,
    JobPause,
    LifecycleVersion,
    ListPage,
    Location,
    MoveCandidate,
    MultipartRecord,
    NoSuchBucketError,
    NoSuchUploadError,
    ObjectRecord,
    OperationCounts,
    QueuedDeletion,
    Quota,
    QuotaExceeded,
    RebalanceRecord,
    RebalanceStateError,
    TagSet,
    UsageRecount,
    VersionPage,
    WriteIntent,
    WriteIntentExpired,
)
from s3balance.store.leases import LeaseState
from s3balance.store.objects import lease_ms
from s3balance.store.parts import COMPLETED_KEPT, CompletedUpload, PartRecord
from s3balance.store.quotas import QUOTA_FROM_API, QUOTA_FROM_CONFIG
from s3balance.store.records import encode_key, whole_seconds

UTC = datetime.UTC
P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", ObjectRecord, MultipartRecord)


@dataclass
class _Intent:
    backend: str
    real_key: str
    lease_until: float  # by the database's clock
    size: int  # bytes reserved on the backend (and in the bucket)
    bucket: Optional[str] = None  # the virtual bucket written to
    objects: int = 0  # objects reserved in the bucket


@dataclass
class _Deletion:
    backend: str
    real_key: str
    backend_upload_id: Optional[str]
    reason: str
    due: datetime.datetime  # by the daemon's clock
    attempts: int = 0


@dataclass
class _Upload:
    record: MultipartRecord
    reserved: int = 0  # bytes of the parts received, reserved on the backend
    last_part: Optional[datetime.datetime] = None


@dataclass
class MemoryTables:
    """The rows of one database; stores made on the same tables are daemons sharing it."""

    buckets: dict[str, BucketRecord] = field(default_factory=dict)
    # (bucket, key) -> the record, with its id and locations
    objects: dict[tuple[str, str], ObjectRecord] = field(default_factory=dict)
    intents: dict[int, _Intent] = field(default_factory=dict)
    deletions: dict[int, _Deletion] = field(default_factory=dict)
    uploads: dict[str, _Upload] = field(default_factory=dict)
    parts: dict[str, dict[int, PartRecord]] = field(default_factory=dict)  # upload id -> number -> part
    completed: dict[str, CompletedUpload] = field(default_factory=dict)
    object_parts: dict[str, list[PartRecord]] = field(default_factory=dict)  # by real key
    operations: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # (backend, month)
    usage: dict[str, tuple[int, int]] = field(default_factory=dict)  # backend -> (bytes, objects)
    # bucket -> (its Quota, who set it: "config" or "api"); buckets without one have no entry
    quotas: dict[str, tuple[Quota, str]] = field(default_factory=dict)
    leases: dict[str, tuple[str, float]] = field(default_factory=dict)  # job -> (holder, expires)
    drains: dict[str, DrainRecord] = field(default_factory=dict)  # backend -> its drain (store/moves.py)
    pauses: dict[str, JobPause] = field(default_factory=dict)  # job -> its pause (store/pauses.py)
    rebalance: Optional[RebalanceRecord] = None  # the cluster's rebalance (store/rebalance.py)
    lifecycles: dict[str, str] = field(default_factory=dict)  # bucket -> its lifecycle configuration's text
    policies: dict[str, str] = field(default_factory=dict)  # bucket -> its policy document
    public_access_blocks: dict[str, str] = field(default_factory=dict)  # bucket -> its Block Public Access text
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))  # every table's ids


_NO_VERSIONS = NotImplementedError("the memory store keeps no object versions: test versioning on a real store")


def _answers(
    method: Callable[Concatenate[MemoryStore, P], T],
) -> Callable[Concatenate[MemoryStore, P], Deferred[T]]:
    """
    C{method} as the store answers: a Deferred already fired with its result,
    or failed with what it raised (having changed nothing: every method checks
    before it writes), or with RuntimeError when the store is not started.
    """

    @functools.wraps(method)
    def answer(self: MemoryStore, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        if not self._started:
            return defer.fail(RuntimeError("the metadata store is not started"))
        try:
            return defer.succeed(method(self, *args, **kwargs))
        except Exception:
            return defer.fail()

    return answer


def _first(row: tuple[bytes, Any]) -> bytes:
    return row[0]


def _common_prefix(key: bytes, prefix: bytes, delimiter: bytes) -> Optional[bytes]:
    """The common prefix C{key} (which starts with C{prefix}) folds into, or None."""
    at = key.find(delimiter, len(prefix)) if delimiter else -1
    return key[: at + len(delimiter)] if at >= 0 else None


def _page(
    rows: Iterable[tuple[bytes, R]],
    prefix: str,
    delimiter: str,
    limit: int,
    keep: Callable[[bytes, Optional[bytes], R], bool],
    entry: Callable[[R], R],
) -> ListPage:
    """
    A page of the listing of C{rows} ((UTF-8 key, record) in listing order):
    the records whose key starts with C{prefix}, each as C{entry(record)} or
    as the common prefix (str) it folds into, listed once; only those that
    C{keep(key, common prefix or None, record)}; at most C{limit}.
    """
    prefix_b, delimiter_b = encode_key(prefix), encode_key(delimiter)
    entries: list[Any] = []
    for key, record in rows:
        if len(entries) > limit:  # one more than a page tells whether it is truncated
            break
        if not key.startswith(prefix_b):
            continue
        folded = _common_prefix(key, prefix_b, delimiter_b)
        if not keep(key, folded, record):
            continue
        if folded is None:
            entries.append(entry(record))
        elif not entries or entries[-1] != folded.decode("utf-8"):
            entries.append(folded.decode("utf-8"))
    truncated = len(entries) > limit
    entries = entries[:limit]
    marker = None
    if truncated and entries:
        marker = entries[-1] if isinstance(entries[-1], str) else entries[-1].key
    return ListPage(entries=tuple(entries), is_truncated=truncated, next_marker=marker)


@implementer(IMetadataStore)
class MemoryStore:
    """
    The methods are written as they compute; C{@_answers} makes each return a
    Deferred of that, as the interface says.

    @param clock: the database's clock (leases); by default the reactor.
    @param now: the daemon's clock, returning timezone-aware UTC datetimes;
        by default C{clock}'s time.
    @param tables: the database; by default a new, empty one.
    @param deletion_grace: seconds replaced and deleted copies wait in the
        deletion queue (as the real store's parameter).
    """

    url = "memory:"

    def __init__(
        self,
        clock: Optional[IReactorTime] = None,
        now: Optional[Callable[[], datetime.datetime]] = None,
        tables: Optional[MemoryTables] = None,
        deletion_grace: float = 0.0,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock: IReactorTime = clock
        self._now = now or (lambda: datetime.datetime.fromtimestamp(self.clock.seconds(), UTC))
        self.tables = tables if tables is not None else MemoryTables()
        self.deletion_grace = datetime.timedelta(seconds=deletion_grace)
        self._started = False

    def __repr__(self) -> str:
        return f"<MemoryStore on tables {id(self.tables):#x}>"

    def _lease_end(self, seconds: float) -> float:
        """The database's now plus C{seconds}, in whole milliseconds as database_time adds them."""
        return self.clock.seconds() + lease_ms(seconds) / 1000

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Deferred[None]:
        self._started = True
        return defer.succeed(None)

    def stop(self) -> Deferred[None]:
        self._started = False
        return defer.succeed(None)

    # -- buckets --------------------------------------------------------------

    @_answers
    def sync_config_buckets(self, names: Sequence[str], quotas: Optional[Mapping[str, Quota]] = None) -> None:
        buckets, wanted, now = self.tables.buckets, set(names), self._now()
        for name in sorted(wanted - buckets.keys()):
            buckets[name] = BucketRecord(name=name, created=now, origin=ORIGIN_CONFIG)
        for name, bucket in list(buckets.items()):
            origin = ORIGIN_CONFIG if name in wanted else ORIGIN_API
            if bucket.origin != origin:
                buckets[name] = attr.evolve(bucket, origin=origin)
        # The configured quotas; a configured quota no longer configured goes, the API's stay.
        configured = {name: q for name, q in (quotas or {}).items() if name in wanted and q.limited}
        for name, (_, origin) in list(self.tables.quotas.items()):
            if origin == QUOTA_FROM_CONFIG and name not in configured:
                del self.tables.quotas[name]
        for name, quota in configured.items():
            self.tables.quotas[name] = (quota, QUOTA_FROM_CONFIG)

    @_answers
    def list_buckets(self) -> list[BucketRecord]:
        return sorted(self.tables.buckets.values(), key=lambda bucket: bucket.name)

    @_answers
    def get_bucket(self, name: str) -> Optional[BucketRecord]:
        record = self.tables.buckets.get(name)
        if record is None:
            return None
        return attr.evolve(
            record,
            policy=self.tables.policies.get(name),
            public_access_block=self.tables.public_access_blocks.get(name),
        )

    @_answers
    def set_bucket_tags(self, name: str, tags: TagSet) -> bool:
        bucket = self.tables.buckets.get(name)
        if bucket is None:
            return False
        self.tables.buckets[name] = attr.evolve(bucket, tags=tuple(sorted(tags)))
        return True

    # -- bucket lifecycle configurations (store/lifecycle.py) -----------------------

    @_answers
    def set_bucket_lifecycle(self, name: str, text: Optional[str]) -> bool:
        if name not in self.tables.buckets:
            return False
        if text is None:
            self.tables.lifecycles.pop(name, None)
        else:
            self.tables.lifecycles[name] = text
        return True

    @_answers
    def get_bucket_lifecycle(self, name: str) -> Optional[str]:
        return self.tables.lifecycles.get(name)

    @_answers
    def lifecycle_buckets(self) -> list[tuple[str, str]]:
        return sorted(self.tables.lifecycles.items())

    @_answers
    def lifecycle_page(self, bucket: str, prefix: str, after: str, limit: int) -> list[ObjectRecord]:
        prefix_b, after_b = encode_key(prefix), encode_key(after)
        rows = sorted(
            (encode_key(key), record) for (of, key), record in self.tables.objects.items()
            if of == bucket and encode_key(key).startswith(prefix_b) and encode_key(key) > after_b
        )
        return [attr.evolve(record, locations=()) for _, record in rows[: max(0, limit)]]

    # Versions, removed or kept by the expirer, are tested on the real stores.

    def lifecycle_versions_page(
        self, bucket: str, prefix: str, after_key: str, after_id: int, limit: int
    ) -> Deferred[list[LifecycleVersion]]:
        raise _NO_VERSIONS

    def expire_version(self, bucket: str, version: LifecycleVersion) -> Deferred[Deletion]:
        raise _NO_VERSIONS

    # -- bucket policies and Block Public Access (store/policies.py) ----------------

    @_answers
    def set_bucket_policy(self, name: str, text: Optional[str]) -> bool:
        if name not in self.tables.buckets:
            return False
        if text is None:
            self.tables.policies.pop(name, None)
        else:
            self.tables.policies[name] = text
        return True

    @_answers
    def set_public_access_block(self, name: str, text: Optional[str]) -> bool:
        if name not in self.tables.buckets:
            return False
        if text is None:
            self.tables.public_access_blocks.pop(name, None)
        else:
            self.tables.public_access_blocks[name] = text
        return True

    @_answers
    def create_bucket(
        self, name: str, owner: Optional[str] = None, acl: Optional[str] = None, object_lock: Optional[str] = None
    ) -> BucketRecord:
        if object_lock is not None:
            raise _NO_VERSIONS
        if name in self.tables.buckets:
            raise BucketExists(name)
        bucket = self.tables.buckets[name] = BucketRecord(
            name=name, created=self._now(), origin=ORIGIN_API, owner=owner, acl=acl
        )
        return bucket

    @_answers
    def set_bucket_acl(self, name: str, acl: Optional[str]) -> bool:
        bucket = self.tables.buckets.get(name)
        if bucket is None:
            return False
        self.tables.buckets[name] = attr.evolve(bucket, acl=acl)
        return True

    @_answers
    def set_bucket_owner(self, name: str, owner: Optional[str]) -> bool:
        bucket = self.tables.buckets.get(name)
        if bucket is None:
            return False
        self.tables.buckets[name] = attr.evolve(bucket, owner=owner)
        return True

    @_answers
    def delete_bucket(self, name: str) -> int:
        bucket = self.tables.buckets.get(name)
        if bucket is None:
            raise NoSuchBucketError(name)
        if bucket.origin != ORIGIN_API:
            raise ConfigBucketError(name)
        if any(in_bucket == name for in_bucket, _ in self.tables.objects):
            raise BucketNotEmpty(name)
        # Open multipart uploads do not keep a bucket: they are aborted with it.
        uploads = [u for u, upload in self.tables.uploads.items() if upload.record.bucket == name]
        del self.tables.buckets[name]
        self.tables.quotas.pop(name, None)
        self.tables.lifecycles.pop(name, None)
        self.tables.policies.pop(name, None)
        self.tables.public_access_blocks.pop(name, None)
        for upload_id in uploads:
            self._abort(upload_id, True)
        return len(uploads)

    # -- writes ---------------------------------------------------------------

    @_answers
    def begin_write(
        self,
        backend: str,
        real_key: str,
        lease_seconds: float,
        size: int = 0,
        max_size: Optional[int] = None,
        bucket: Optional[str] = None,
        objects: int = 0,
    ) -> WriteIntent:
        if max_size is not None:
            self._check_capacity(backend, size, max_size)
        if bucket is not None:
            self._check_quota(bucket, size, objects)
        intent_id = next(self.tables.ids)
        lease_until = self._lease_end(lease_seconds)
        self.tables.intents[intent_id] = _Intent(backend, real_key, lease_until, size, bucket, objects)
        return WriteIntent(id=intent_id, backend=backend, real_key=real_key)

    def _bucket_usage(self, bucket: str) -> BucketUsage:
        """What store.quotas.bucket_usage says of one bucket (which exists)."""
        t = self.tables
        stored = [record.size for (of, _), record in t.objects.items() if of == bucket]
        writes = [(i.size, i.objects) for i in t.intents.values() if i.bucket == bucket]
        uploads = [u.reserved for u in t.uploads.values() if u.record.bucket == bucket]
        quota, origin = t.quotas.get(bucket, (Quota(), None))
        return BucketUsage(
            bucket=bucket,
            origin=t.buckets[bucket].origin,
            used_bytes=sum(stored),
            object_count=len(stored),
            reserved_bytes=sum(size for size, _ in writes) + sum(uploads),
            reserved_objects=sum(count for _, count in writes) + len(uploads),
            quota_bytes=quota.max_bytes,
            quota_objects=quota.max_objects,
            quota_origin=origin,
        )

    def _check_quota(self, bucket: str, size: int, objects: int) -> None:
        """QuotaExceeded unless C{size} bytes and C{objects} objects more fit C{bucket}'s quota (store.quotas.check_quota)."""
        if bucket not in self.tables.quotas or bucket not in self.tables.buckets:
            return
        usage = self._bucket_usage(bucket)
        if usage.quota_bytes is not None and usage.used_bytes + usage.reserved_bytes + size > usage.quota_bytes:
            raise QuotaExceeded(bucket, "max_size", usage.used_bytes, usage.reserved_bytes, size, usage.quota_bytes)
        if (
            usage.quota_objects is not None
            and objects
            and usage.object_count + usage.reserved_objects + objects > usage.quota_objects
        ):
            raise QuotaExceeded(
                bucket, "max_objects", usage.object_count, usage.reserved_objects, objects, usage.quota_objects
            )

    @_answers
    def bucket_usage(self) -> list[BucketUsage]:
        return [self._bucket_usage(name) for name in sorted(self.tables.buckets)]

    @_answers
    def recount_bucket_usage(self, name: str) -> UsageRecount:
        """The fake's usage is always its objects' (it never drifts): nothing changes."""
        if name not in self.tables.buckets:
            raise NoSuchBucketError(name)
        usage = self._bucket_usage(name)
        return UsageRecount(name, usage.used_bytes, usage.object_count, usage.used_bytes, usage.object_count)

    @_answers
    def set_bucket_quota(self, name: str, max_bytes: Optional[int], max_objects: Optional[int]) -> BucketUsage:
        if name not in self.tables.buckets:
            raise NoSuchBucketError(name)
        if self.tables.quotas.get(name, (None, None))[1] == QUOTA_FROM_CONFIG:
            raise ConfigQuotaError(name)
        quota = Quota(max_bytes, max_objects)
        if quota.limited:
            self.tables.quotas[name] = (quota, QUOTA_FROM_API)
        else:
            self.tables.quotas.pop(name, None)
        return self._bucket_usage(name)

    def _check_capacity(self, backend: str, size: int, max_size: int) -> None:
        """BackendFull unless C{size} more bytes fit: stored usage + every intent's and upload's reservation."""
        used = self.tables.usage.get(backend, (0, 0))[0]
        reserved = sum(i.size for i in self.tables.intents.values() if i.backend == backend)
        reserved += sum(u.reserved for u in self.tables.uploads.values() if u.record.backend == backend)
        if used + reserved + size > max_size:
            raise BackendFull(backend, used, reserved, size, max_size)

    def _intent(self, intent_id: int) -> _Intent:
        """The intent; WriteIntentExpired when it is gone (taken, or swept after its lease)."""
        intent = self.tables.intents.get(intent_id)
        if intent is None:
            raise WriteIntentExpired(intent_id)
        return intent

    @_answers
    def grow_write(
        self, intent_id: int, backend: str, size: int, max_size: Optional[int] = None, bucket: Optional[str] = None
    ) -> None:
        if max_size is not None:
            self._check_capacity(backend, size, max_size)
        if bucket is not None:
            self._check_quota(bucket, size, 0)
        self._intent(intent_id).size += size

    @_answers
    def record_part(self, intent_id: int, upload_id: str, size: int) -> None:
        self._intent(intent_id)
        del self.tables.intents[intent_id]
        upload = self.tables.uploads.get(upload_id)
        if upload is not None:  # (aborted meanwhile: nothing to keep)
            upload.reserved += size
            upload.last_part = self._now()

    @_answers
    def touch_multipart(self, upload_id: str) -> None:
        upload = self.tables.uploads.get(upload_id)
        if upload is not None:
            upload.last_part = self._now()

    @_answers
    def renew_write(self, intent_id: int, lease_seconds: float) -> None:
        self._intent(intent_id).lease_until = self._lease_end(lease_seconds)

    @_answers
    def abandon_write(self, intent_id: int, backend_object_may_exist: bool) -> None:
        intent = self.tables.intents.pop(intent_id, None)
        if intent is not None and backend_object_may_exist:
            self._queue(intent.backend, intent.real_key, REASON_ABANDONED)

    @_answers
    def commit_object(
        self,
        intent_id: int,
        record: ObjectRecord,
        if_match: Optional[str] = None,
        if_none_match: Optional[str] = None,
        also: Sequence[int] = (),
    ) -> ObjectRecord:
        for taken in (intent_id, *also):
            self._intent(taken)
        self._check_put(record, if_match, if_none_match)
        for taken in (intent_id, *also):
            del self.tables.intents[taken]
        return self._put(record)

    def _check_put(self, record: ObjectRecord, if_match: Optional[str], if_none_match: Optional[str]) -> None:
        """What may refuse a write of C{record}: a missing bucket, a precondition."""
        encode_key(record.key)  # (a key that is no UTF-8 fails here as in the database's)
        if record.bucket not in self.tables.buckets:
            raise NoSuchBucketError(record.bucket)
        current = self.tables.objects.get((record.bucket, record.key))
        check_preconditions(current.etag if current is not None else None, if_match, if_none_match)

    def _put(self, record: ObjectRecord) -> ObjectRecord:
        """Insert or replace C{record}'s row; the replaced version's locations (not the new ones) are queued."""
        current = self.tables.objects.get((record.bucket, record.key))
        if current is None:
            object_id = next(self.tables.ids)
        else:
            object_id = current.id
            for old in current.locations:
                if old not in record.locations:
                    self._queue(old.backend, old.real_key, REASON_REPLACED, grace=True)
        stored = attr.evolve(
            record,
            id=object_id,
            last_modified=whole_seconds(record.last_modified),
            headers=dict(record.headers),
            checksums=dict(record.checksums),
            locations=tuple(record.locations),
            tags=tuple(sorted(record.tags)),
        )
        self.tables.objects[(record.bucket, record.key)] = stored
        return stored

    @_answers
    def get_object(self, bucket: str, key: str) -> Optional[ObjectRecord]:
        return self.tables.objects.get((bucket, key))

    @_answers
    def set_object_acl(self, bucket: str, key: str, acl: Optional[str]) -> bool:
        current = self.tables.objects.get((bucket, key))
        if current is None:
            return False
        self.tables.objects[(bucket, key)] = attr.evolve(current, acl=acl)
        return True

    @_answers
    def set_object_tags(self, bucket: str, key: str, tags: TagSet) -> bool:
        current = self.tables.objects.get((bucket, key))
        if current is None:
            return False
        self.tables.objects[(bucket, key)] = attr.evolve(current, tags=tuple(sorted(tags)))
        return True

    @_answers
    def delete_object(
        self,
        bucket: str,
        key: str,
        expected: Optional[ObjectRecord] = None,
        version_id: Optional[str] = None,
        bypass_governance: bool = False,
    ) -> Deletion:
        return self._delete_object(bucket, key, expected, version_id)

    def _delete_object(
        self, bucket: str, key: str, expected: Optional[ObjectRecord] = None, version_id: Optional[str] = None
    ) -> Deletion:
        # No versions here: "null" names the one object, any other id none.
        if version_id not in (None, "null"):
            return Deletion()
        current = self.tables.objects.get((bucket, key))
        if expected is not None and current is not None and (
            (current.etag, current.size, current.last_modified, tuple(current.tags))
            != (expected.etag, expected.size, expected.last_modified, tuple(expected.tags))
        ):
            return Deletion()
        return Deletion(removed=self._delete(bucket, key))

    def _delete(self, bucket: str, key: str) -> Optional[ObjectRecord]:
        record = self.tables.objects.pop((bucket, key), None)
        for location in record.locations if record is not None else ():
            self._queue(location.backend, location.real_key, REASON_DELETED, grace=True)
        return record

    @_answers
    def delete_objects(
        self, bucket: str, items: Sequence[tuple[str, Optional[str]]], bypass_governance: bool = False
    ) -> dict[tuple[str, Optional[str]], Deletion]:
        ordered = sorted(set(items), key=lambda item: (encode_key(item[0]), item[1] or ""))
        return {item: self._delete_object(bucket, item[0], version_id=item[1]) for item in ordered}

    # No versions here: versioning is tested on the real stores.

    def set_bucket_versioning(self, name: str, status: str) -> Deferred[bool]:
        raise _NO_VERSIONS

    def get_version(self, bucket: str, key: str, version_id: Optional[str]) -> Deferred[Optional[ObjectRecord]]:
        raise _NO_VERSIONS

    def set_version_tags(self, bucket: str, key: str, version_id: str, tags: TagSet) -> Deferred[Optional[bool]]:
        raise _NO_VERSIONS

    def set_version_acl(
        self, bucket: str, key: str, version_id: str, acl: Optional[str]
    ) -> Deferred[Optional[bool]]:
        raise _NO_VERSIONS

    def list_versions(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, version_id_marker: Optional[str],
        max_keys: int,
    ) -> Deferred[VersionPage]:
        raise _NO_VERSIONS

    def set_retention(
        self,
        bucket: str,
        key: str,
        version_id: Optional[str],
        mode: Optional[str],
        until: Optional[datetime.datetime],
        bypass_governance: bool = False,
    ) -> Deferred[Optional[ObjectRecord]]:
        raise _NO_VERSIONS

    def set_legal_hold(
        self, bucket: str, key: str, version_id: Optional[str], on: bool
    ) -> Deferred[Optional[ObjectRecord]]:
        raise _NO_VERSIONS

    def set_object_lock(self, name: str, text: str) -> Deferred[Optional[str]]:
        raise _NO_VERSIONS

    @_answers
    def list_objects(
        self, bucket: str, prefix: str = "", delimiter: str = "", after: str = "", max_keys: int = 1000
    ) -> ListPage:
        if max_keys <= 0:
            return ListPage(entries=(), is_truncated=False, next_marker=None)
        after_b = encode_key(after)
        objects = self.tables.objects.items()
        rows = sorted(
            ((encode_key(key), record) for (of, key), record in objects if of == bucket), key=_first
        )
        return _page(
            rows,
            prefix,
            delimiter,
            max_keys,
            # An entry (key or common prefix) up to the marker was listed already.
            lambda key, folded, record: (folded or key) > after_b,
            # As the listing's rows: no locations, no tags, no ACL.
            lambda record: attr.evolve(record, locations=(), tags=(), acl=None),
        )

    # -- cleanup --------------------------------------------------------------

    def _queue(
        self, backend: str, real_key: str, reason: str, upload_id: Optional[str] = None, grace: bool = False
    ) -> None:
        due = self._now() + (self.deletion_grace if grace else datetime.timedelta(0))
        self.tables.deletions[next(self.tables.ids)] = _Deletion(backend, real_key, upload_id, reason, due)

    @_answers
    def expired_writes(self, limit: int = 100) -> int:
        now = self.clock.seconds()
        intents = self.tables.intents
        expired = sorted((i.lease_until, i_id) for i_id, i in intents.items() if i.lease_until <= now)[:limit]
        for _, intent_id in expired:
            intent = intents.pop(intent_id)
            self._queue(intent.backend, intent.real_key, REASON_LEASE_EXPIRED)
        return len(expired)

    @_answers
    def queued_deletions(self, limit: int = 100) -> list[QueuedDeletion]:
        now, deletions = self._now(), self.tables.deletions
        due = sorted((d.due, d_id) for d_id, d in deletions.items() if d.due <= now)[:limit]
        return [
            QueuedDeletion(
                id=d_id,
                backend=deletions[d_id].backend,
                real_key=deletions[d_id].real_key,
                backend_upload_id=deletions[d_id].backend_upload_id,
                attempts=deletions[d_id].attempts,
                reason=deletions[d_id].reason,
            )
            for _, d_id in due
        ]

    @_answers
    def finish_deletion(self, deletion_id: int) -> None:
        deletion = self.tables.deletions.pop(deletion_id, None)
        if deletion is None:
            return
        # Its real key's part records go too, unless an object's location (any backend's) refers to it.
        located = (loc.real_key for record in self.tables.objects.values() for loc in record.locations)
        if deletion.real_key not in located:
            self.tables.object_parts.pop(deletion.real_key, None)

    @_answers
    def is_referenced(self, backend: str, real_key: str) -> bool:
        t, wanted = self.tables, (backend, real_key)
        return (
            any(Location(backend, real_key) in record.locations for record in t.objects.values())
            or any((i.backend, i.real_key) == wanted for i in t.intents.values())
            or any((u.record.backend, u.record.real_key) == wanted for u in t.uploads.values())
        )

    @_answers
    def retry_deletion_later(self, deletion_id: int, delay_seconds: float) -> None:
        deletion = self.tables.deletions.get(deletion_id)
        if deletion is not None:
            deletion.attempts += 1
            deletion.due = self._now() + datetime.timedelta(seconds=delay_seconds)

    @_answers
    def postpone_deletions(self, backend: str, delay_seconds: float) -> int:
        now = self._now()
        due = [d for d in self.tables.deletions.values() if d.backend == backend and d.due <= now]
        for deletion in due:
            deletion.due = now + datetime.timedelta(seconds=delay_seconds)
        return len(due)

    # -- usage and operation counters -----------------------------------------

    @_answers
    def backend_usage(self) -> list[BackendUsage]:
        return self._aggregate_usage()

    def _aggregate_usage(self) -> list[BackendUsage]:
        """Bytes and location rows per backend (an object stored twice on one backend counts twice)."""
        totals: dict[str, tuple[int, int]] = {}
        for record in self.tables.objects.values():
            for location in record.locations:
                used, count = totals.get(location.backend, (0, 0))
                totals[location.backend] = (used + record.size, count + 1)
        return [BackendUsage(backend, used, count) for backend, (used, count) in sorted(totals.items())]

    @_answers
    def count_operations(
        self, backend: str, type_a_delta: int, type_b_delta: int, when: Optional[datetime.datetime] = None
    ) -> None:
        row = (backend, (when or self._now()).astimezone(UTC).strftime("%Y-%m"))
        type_a, type_b = self.tables.operations.get(row, (0, 0))
        self.tables.operations[row] = (type_a + type_a_delta, type_b + type_b_delta)

    @_answers
    def operation_counts(self, month: str) -> list[OperationCounts]:
        rows = sorted(self.tables.operations.items())
        return [OperationCounts(backend, of, a, b) for (backend, of), (a, b) in rows if of == month]

    @_answers
    def add_backend_usage(self, deltas: dict[str, tuple[int, int]]) -> list[BackendUsage]:
        for backend, (delta_bytes, delta_objects) in sorted(deltas.items()):
            if delta_bytes or delta_objects:
                used, count = self.tables.usage.get(backend, (0, 0))
                self.tables.usage[backend] = (used + delta_bytes, count + delta_objects)
        return self._stored_usage()

    @_answers
    def stored_backend_usage(self) -> list[BackendUsage]:
        return self._stored_usage()

    def _stored_usage(self) -> list[BackendUsage]:
        return [
            BackendUsage(backend, used, count) for backend, (used, count) in sorted(self.tables.usage.items())
        ]

    @_answers
    def reconcile_backend_usage(self) -> list[BackendUsage]:
        truth = self._aggregate_usage()
        self.tables.usage.clear()
        self.tables.usage.update((u.backend, (u.used_bytes, u.object_count)) for u in truth)
        return truth

    # -- multipart ------------------------------------------------------------

    @_answers
    def create_multipart(self, record: MultipartRecord, intent_id: Optional[int] = None) -> None:
        encode_key(record.key)
        if intent_id is not None:
            self._intent(intent_id)
        if record.bucket not in self.tables.buckets:  # (the intent stays, as the real store's rollback keeps it)
            raise NoSuchBucketError(record.bucket)
        if record.upload_id in self.tables.uploads:  # (the database's primary key refuses it)
            raise ValueError(f"upload id {record.upload_id!r} exists")
        if intent_id is not None:
            del self.tables.intents[intent_id]
        self.tables.uploads[record.upload_id] = _Upload(
            attr.evolve(record, headers=dict(record.headers), tags=tuple(sorted(record.tags)))
        )

    @_answers
    def get_multipart(self, upload_id: str) -> Optional[MultipartRecord]:
        upload = self.tables.uploads.get(upload_id)
        return upload.record if upload is not None else None

    def _uploads(self, bucket: str) -> list[tuple[bytes, MultipartRecord]]:
        """The uploads of C{bucket}, (UTF-8 key, record) in (key, initiated, upload id) order."""
        uploads = [u.record for u in self.tables.uploads.values() if u.record.bucket == bucket]
        rows = [(encode_key(record.key), record) for record in uploads]
        return sorted(rows, key=lambda row: (row[0], row[1].initiated, row[1].upload_id))

    def _after(
        self, bucket: str, key_marker: str, upload_id_marker: str
    ) -> Callable[[bytes, MultipartRecord], bool]:
        """
        Whether an upload comes after the markers (store.multipart._after_markers):
        after the marker upload's place while it is an upload of that key in
        C{bucket}; at the key's first upload when it is not (gone); without an
        upload id marker, after the key.
        """
        marker_b = encode_key(key_marker)
        if not upload_id_marker:
            return lambda key, record: key > marker_b
        marker = self.tables.uploads.get(upload_id_marker)
        if marker is None or (marker.record.bucket, marker.record.key) != (bucket, key_marker):
            return lambda key, record: key >= marker_b
        last = (marker_b, marker.record.initiated, marker.record.upload_id)
        return lambda key, record: (key, record.initiated, record.upload_id) > last

    @_answers
    def list_multipart(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> list[MultipartRecord]:
        prefix_b = encode_key(prefix)
        after = self._after(bucket, key_marker, upload_id_marker) if key_marker else (lambda key, record: True)
        rows = self._uploads(bucket)
        found = [record for key, record in rows if key.startswith(prefix_b) and after(key, record)]
        return found[: max(0, max_uploads)]

    @_answers
    def list_multipart_page(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> ListPage:
        if max_uploads <= 0:  # an empty page, not truncated (as list_objects' max_keys 0)
            return ListPage(entries=(), is_truncated=False, next_marker=None)
        marker_b, prefix_b = encode_key(key_marker), encode_key(prefix)
        listed = None  # a marker inside a common prefix (or equal to it): that prefix was listed
        if key_marker and marker_b.startswith(prefix_b):
            listed = _common_prefix(marker_b, prefix_b, encode_key(delimiter))
        after = self._after(bucket, key_marker, upload_id_marker) if key_marker else None

        def keep(key: bytes, folded: Optional[bytes], record: MultipartRecord) -> bool:
            if listed is not None:
                return key > listed and not key.startswith(listed)
            return after is None or after(key, record)

        return _page(self._uploads(bucket), prefix, delimiter, max_uploads, keep, lambda record: record)

    @_answers
    def complete_multipart(
        self,
        upload_id: str,
        record: ObjectRecord,
        if_match: Optional[str] = None,
        if_none_match: Optional[str] = None,
        object_parts: Sequence[PartRecord] = (),
    ) -> ObjectRecord:
        if upload_id not in self.tables.uploads:
            raise NoSuchUploadError(upload_id)
        self._check_put(record, if_match, if_none_match)
        real_key = record.locations[0].real_key
        del self.tables.uploads[upload_id]
        stored = self._put(record)
        self.tables.parts.pop(upload_id, None)
        kept = [PartRecord(p.number, p.size, "", dict(p.checksums)) for p in object_parts]  # (no ETags)
        if kept:
            self.tables.object_parts.setdefault(real_key, []).extend(kept)
        # Remembered for a retried Complete; those older than COMPLETED_KEPT go now.
        now, completed = self._now(), self.tables.completed
        for old in [u for u, done in completed.items() if done.completed < now - COMPLETED_KEPT]:
            del completed[old]
        completed[upload_id] = CompletedUpload(
            upload_id, record.bucket, record.key, record.etag, dict(record.checksums), now
        )
        return stored

    @_answers
    def record_part_checksums(
        self, upload_id: str, number: int, size: int, etag: str, checksums: Mapping[str, str]
    ) -> None:
        self.tables.parts.setdefault(upload_id, {})[number] = PartRecord(number, size, etag, dict(checksums))

    @_answers
    def multipart_parts(self, upload_id: str) -> list[PartRecord]:
        return [part for _, part in sorted(self.tables.parts.get(upload_id, {}).items())]

    @_answers
    def completed_upload(self, upload_id: str) -> Optional[CompletedUpload]:
        done = self.tables.completed.get(upload_id)
        return None if done is None or done.completed < self._now() - COMPLETED_KEPT else done

    @_answers
    def object_parts_page(self, real_key: str, marker: int, max_parts: int) -> tuple[list[PartRecord], bool]:
        found = [part for part in self.tables.object_parts.get(real_key, []) if part.number > marker]
        found.sort(key=lambda part: part.number)
        return found[:max_parts], len(found) > max_parts

    @_answers
    def abort_multipart(self, upload_id: str, queue_backend_abort: bool) -> Optional[MultipartRecord]:
        return self._abort(upload_id, queue_backend_abort)

    def _abort(self, upload_id: str, queue_backend_abort: bool) -> Optional[MultipartRecord]:
        upload = self.tables.uploads.pop(upload_id, None)
        if upload is None:
            return None
        self.tables.parts.pop(upload_id, None)
        record = upload.record
        if queue_backend_abort:
            self._queue(record.backend, record.real_key, REASON_MULTIPART_ABORTED, record.backend_upload_id)
        return record

    @_answers
    def stale_multipart(self, older_than: datetime.datetime, limit: int = 100) -> list[MultipartRecord]:
        """Uploads idle since before C{older_than}: no part since (nor, without parts, initiated since)."""
        uploads = self.tables.uploads.values()
        idle = [
            u.record
            for u in uploads
            if max(u.record.initiated, u.last_part or u.record.initiated) < older_than
        ]
        return sorted(idle, key=lambda r: (r.initiated, r.upload_id))[:limit]

    # -- cluster-wide background jobs -------------------------------------------

    @_answers
    def acquire_lease(self, job: str, holder: str, seconds: float) -> bool:
        current = self.tables.leases.get(job)
        if current is not None and current[0] != holder and current[1] >= self.clock.seconds():
            return False  # another holder's, not expired
        self.tables.leases[job] = (holder, self._lease_end(seconds))
        return True

    @_answers
    def release_lease(self, job: str, holder: str) -> bool:
        current = self.tables.leases.get(job)
        if current is None or current[0] != holder:
            return False
        del self.tables.leases[job]
        return True

    @_answers
    def lease_state(self, job: str) -> Optional[LeaseState]:
        current = self.tables.leases.get(job)
        if current is None:
            return None
        return LeaseState(job=job, holder=current[0], live=current[1] > self.clock.seconds())

    @_answers
    def pause_job(self, job: str, paused_by: Optional[str] = None, reason: Optional[str] = None) -> JobPause:
        pauses = self.tables.pauses
        if job not in pauses:
            pauses[job] = JobPause(job, self._now(), pause_sql.clip(paused_by), pause_sql.clip(reason))
        return pauses[job]

    @_answers
    def resume_job(self, job: str) -> bool:
        return self.tables.pauses.pop(job, None) is not None

    @_answers
    def paused_jobs(self) -> list[JobPause]:
        return [self.tables.pauses[job] for job in sorted(self.tables.pauses)]

    # -- drains (store/moves.py) --------------------------------------------------

    def _held(self, backend: str) -> tuple[int, int]:
        """(locations, bytes) on C{backend}, as moves._held counts them."""
        held = [r.size for r in self.tables.objects.values() for loc in r.locations if loc.backend == backend]
        return len(held), sum(held)

    @_answers
    def start_drain(self, backend: str, rate: Optional[int] = None) -> DrainRecord:
        drain, now = self.tables.drains.get(backend), self._now()
        if drain is not None and drain.state in moves.UNDER_WAY:
            if rate is not None:
                drain = self.tables.drains[backend] = attr.evolve(drain, rate=rate, updated=now)
            return drain
        objects, size = self._held(backend)
        drain = self.tables.drains[backend] = DrainRecord(
            backend=backend,
            state=moves.DRAINING,
            rate=rate,
            started=now,
            updated=now,
            total_objects=objects,
            total_bytes=size,
            remaining_objects=objects,
            remaining_bytes=size,
        )
        return drain

    @_answers
    def set_drain_state(self, backend: str, state: str) -> Optional[DrainRecord]:
        if state not in (moves.DRAINING, moves.PAUSED):
            raise ValueError(f"a drain is paused or resumed, not set to {state!r}")
        drain = self.tables.drains.get(backend)
        if drain is None:
            return None
        if drain.state not in moves.UNDER_WAY:
            raise DrainStateError(f"the drain of {backend} is {drain.state}")
        if drain.state != state:
            drain = self.tables.drains[backend] = attr.evolve(drain, state=state, updated=self._now())
        return drain

    @_answers
    def set_drain_rate(self, backend: str, rate: Optional[int]) -> Optional[DrainRecord]:
        drain = self.tables.drains.get(backend)
        if drain is None:
            return None
        drain = self.tables.drains[backend] = attr.evolve(drain, rate=rate, updated=self._now())
        return drain

    @_answers
    def cancel_drain(self, backend: str) -> Optional[DrainRecord]:
        return self.tables.drains.pop(backend, None)

    @_answers
    def drains(self) -> list[DrainRecord]:
        return [drain for _, drain in sorted(self.tables.drains.items())]

    @_answers
    def drain_candidates(self, backend: str, after: int, limit: int) -> list[MoveCandidate]:
        """The fake's cursor is the object's id (the real store's: the location's)."""
        found = [
            MoveCandidate(cursor=record.id, record=record, source=location)
            for record in sorted(self.tables.objects.values(), key=lambda r: r.id)
            if record.id > after
            for location in record.locations
            if location.backend == backend
        ]
        return found[: max(0, limit)]

    @_answers
    def switch_location(self, intent_id: int, candidate: MoveCandidate, target: Location) -> str:
        if self.tables.intents.pop(intent_id, None) is None:
            return moves.EXPIRED
        record, source = candidate.record, candidate.source
        current = self.tables.objects.get((record.bucket, record.key))
        if current is None or current.id != record.id or source not in current.locations:
            self._queue(target.backend, target.real_key, REASON_ABANDONED)
            return moves.STALE
        locations = tuple(target if loc == source else loc for loc in current.locations)
        self.tables.objects[(record.bucket, record.key)] = attr.evolve(current, locations=locations)
        self._queue(source.backend, source.real_key, moves.REASON_DRAINED, grace=True)
        if source.real_key in self.tables.object_parts:
            self.tables.object_parts[target.real_key] = list(self.tables.object_parts[source.real_key])
        drain = self.tables.drains.get(source.backend)
        if drain is not None:
            self.tables.drains[source.backend] = attr.evolve(
                drain,
                moved_objects=drain.moved_objects + 1,
                moved_bytes=drain.moved_bytes + current.size,
                remaining_objects=max(0, drain.remaining_objects - 1),
                remaining_bytes=max(0, drain.remaining_bytes - current.size),
                updated=self._now(),
            )
        return moves.MOVED

    @_answers
    def recount_drain(self, backend: str, blocked: Optional[int] = None) -> Optional[DrainRecord]:
        drain = self.tables.drains.get(backend)
        if drain is None:
            return None
        t, now = self.tables, self._now()
        objects, size = self._held(backend)
        writes = sum(1 for i in t.intents.values() if i.backend == backend)
        uploads = sum(1 for u in t.uploads.values() if u.record.backend == backend)
        deletions = sum(1 for d in t.deletions.values() if d.backend == backend)
        counts = {"pending_writes": writes, "pending_uploads": uploads, "pending_deletions": deletions}
        drain = attr.evolve(drain, remaining_objects=objects, remaining_bytes=size, updated=now, **counts)
        drain = attr.evolve(drain, **moves.next_state(drain.state, objects, counts, blocked, now))
        t.drains[backend] = drain
        return drain

    @_answers
    def note_drain_progress(self, backend: str, active_seconds: float, failed: int, error: Optional[str]) -> None:
        drain = self.tables.drains.get(backend)
        if drain is None:
            return
        changes: dict[str, Any] = {
            "active_seconds": drain.active_seconds + round(active_seconds * 1000) / 1000,
            "failed_objects": drain.failed_objects + failed,
            "updated": self._now(),
        }
        if error is not None:
            changes["last_error"] = error[: moves.MAX_ERROR] or None
        self.tables.drains[backend] = attr.evolve(drain, **changes)

    # -- the rebalance (store/rebalance.py) -------------------------------------------

    @_answers
    def start_rebalance(self, margin: float, rate: Optional[int] = None) -> RebalanceRecord:
        current, now = self.tables.rebalance, self._now()
        margin = rebalance_sql.to_ppm(margin) / rebalance_sql.PPM
        if current is not None and current.state in rebalance_sql.UNDER_WAY:
            current = attr.evolve(current, margin=margin, updated=now, rate=current.rate if rate is None else rate)
        else:
            current = RebalanceRecord(state=rebalance_sql.RUNNING, margin=margin, rate=rate, started=now, updated=now)
        self.tables.rebalance = current
        return current

    @_answers
    def rebalance(self) -> Optional[RebalanceRecord]:
        return self.tables.rebalance

    @_answers
    def set_rebalance_state(self, state: str, rate: Optional[int] = None) -> Optional[RebalanceRecord]:
        if state not in rebalance_sql.UNDER_WAY:
            raise ValueError(f"a rebalance is paused or resumed, not set to {state!r}")
        current = self.tables.rebalance
        if current is None:
            return None
        if current.state not in rebalance_sql.UNDER_WAY:
            raise RebalanceStateError(f"the rebalance is {current.state}")
        current = self.tables.rebalance = attr.evolve(
            current, state=state, updated=self._now(), rate=current.rate if rate is None else rate
        )
        return current

    @_answers
    def cancel_rebalance(self) -> Optional[RebalanceRecord]:
        current, now = self.tables.rebalance, self._now()
        if current is None:
            return None
        if current.state not in rebalance_sql.UNDER_WAY:
            raise RebalanceStateError(f"the rebalance is {current.state}")
        current = self.tables.rebalance = attr.evolve(
            current, state=rebalance_sql.CANCELLED, updated=now, finished=now
        )
        return current

    @_answers
    def note_rebalance_progress(
        self,
        active_seconds: float,
        failed: int,
        error: Optional[str],
        spread: Optional[float] = None,
        remaining_bytes: Optional[int] = None,
        finished: bool = False,
    ) -> Optional[RebalanceRecord]:
        current, now = self.tables.rebalance, self._now()
        if current is None:
            return None
        changes: dict[str, Any] = {
            "active_seconds": current.active_seconds + round(active_seconds * 1000) / 1000,
            "failed_objects": current.failed_objects + failed,
            "updated": now,
        }
        if error is not None:
            changes["last_error"] = error[: moves.MAX_ERROR] or None
        if spread is not None:
            changes["spread"] = rebalance_sql.to_ppm(spread) / rebalance_sql.PPM
        if remaining_bytes is not None:
            changes["remaining_bytes"] = max(0, remaining_bytes)
        if finished and current.state == rebalance_sql.RUNNING:
            changes.update(state=rebalance_sql.DONE, finished=now, remaining_bytes=0)
        current = self.tables.rebalance = attr.evolve(current, **changes)
        return current

    @_answers
    def rebalance_switch(self, intent_id: int, candidate: MoveCandidate, target: Location) -> str:
        switch = cast(Any, MemoryStore.switch_location).__wrapped__
        outcome: str = switch(self, intent_id, candidate, target)
        current = self.tables.rebalance
        if outcome == moves.MOVED and current is not None:
            size = candidate.record.size
            self.tables.rebalance = attr.evolve(
                current,
                moved_objects=current.moved_objects + 1,
                moved_bytes=current.moved_bytes + size,
                remaining_bytes=max(0, current.remaining_bytes - size),
                updated=self._now(),
            )
        return outcome

    @_answers
    def backends_in_use(self, names: Sequence[str]) -> list[str]:
        used = {loc.backend for record in self.tables.objects.values() for loc in record.locations}
        return sorted(set(names) & used)

    def _same_version(self, record: ObjectRecord) -> Optional[ObjectRecord]:
        current = self.tables.objects.get((record.bucket, record.key))
        if current is None or current.id != record.id or current.etag != record.etag or current.size != record.size:
            return None
        return current

    @_answers
    def add_location(self, intent_id: int, record: ObjectRecord, source: Location, target: Location) -> str:
        if self.tables.intents.pop(intent_id, None) is None:
            return replicas.EXPIRED
        current = self._same_version(record)
        if (
            current is None
            or source not in current.locations
            or any(loc.backend == target.backend for loc in current.locations)
        ):
            self._queue(target.backend, target.real_key, REASON_ABANDONED)
            return replicas.STALE
        self.tables.objects[(record.bucket, record.key)] = attr.evolve(current, locations=(*current.locations, target))
        if source.real_key in self.tables.object_parts:
            self.tables.object_parts[target.real_key] = list(self.tables.object_parts[source.real_key])
        return replicas.ADDED

    @_answers
    def drop_location(self, record: ObjectRecord, location: Location) -> bool:
        current = self._same_version(record)
        if current is None or location not in current.locations or len(current.locations) < 2:
            return False
        remaining = tuple(loc for loc in current.locations if loc != location)
        self.tables.objects[(record.bucket, record.key)] = attr.evolve(current, locations=remaining)
        self._queue(location.backend, location.real_key, replicas.REASON_DROPPED)
        return True

    @_answers
    def under_replicated(
        self, bucket: str, replicas_wanted: int, after: int, limit: int, backends: Optional[Sequence[str]] = None
    ) -> tuple[list[ObjectRecord], int]:
        page = sorted(
            (r for r in self.tables.objects.values() if r.bucket == bucket and r.id is not None and r.id > after),
            key=lambda r: r.id,
        )[:limit]
        if not page:
            return [], after
        live = None if backends is None else set(backends)
        short = [
            r for r in page
            if sum(1 for loc in r.locations if live is None or loc.backend in live) < replicas_wanted
        ]
        return short, page[-1].id
