"""
The metadata store's interface and the values it hands out.

Every method of L{IMetadataStore} returns a L{Deferred}; the SQL behind it runs
on the store's own thread pool, never on the reactor thread.

Ordering of effects that callers rely on (docs/architecture.md, "store/"):

  1. C{begin_write} records an intent (backend, real key) *before* any byte is
     sent to a backend.  If the daemon dies, the intent's lease runs out and
     the cleaner deletes whatever the backend may hold under that real key.
  2. C{commit_object} runs in ONE transaction: it inserts/replaces the object
     row and its location, deletes the intent, and moves the locations of the
     replaced version (if any) to the deletion queue.
  3. C{delete_object} removes the row and queues its locations for deletion in
     the same transaction.
  4. The deletion worker takes rows from the queue, deletes the backend object
     and then C{finish_deletion}.  A crash anywhere leaves at worst a queued or
     intended deletion, never a row without data.

Over 500 lines: the whole contract of the store, every record it hands out
and the order of effects callers rely on, in one place.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Optional

import attr
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreUnavailable(StoreError):
    """The database could not be reached or lost the connection; try again later."""


class BucketExists(StoreError):
    """CreateBucket of a name that exists."""


class BucketNotEmpty(StoreError):
    """DeleteBucket of a bucket that still holds objects."""


class NoSuchBucketError(StoreError):
    """A bucket that is not known to the store."""


class PreconditionFailedError(StoreError):
    """A conditional write (If-Match / If-None-Match) did not hold at commit time."""


class ConfigBucketError(StoreError):
    """DeleteBucket of a bucket that the configuration defines (origin 'config')."""


class ConcurrentInsert(Exception):
    """
    (Inside the store.)  Another transaction inserted the same row (an
    object's bucket and key, a part's upload and number, a backend's capacity
    lock) between our check and our insert.  The transaction runner retries
    the whole transaction, which then finds (and locks) that row.
    """


class ObjectLocked(StoreError):
    """The version is protected by Object Lock (retention or legal hold): it stays."""


class WriteIntentExpired(StoreError):
    """
    The write intent is gone: its lease ran out and the cleaner queued its real
    key for deletion (or it was committed/abandoned already).  The data written
    under it must not be committed; the caller answers with an error.
    """


class NoSuchUploadError(StoreError):
    """A multipart upload id that is not (or no longer) known to the store."""


class BackendFull(StoreError):
    """
    A write's reservation does not fit its backend's max_size: the bytes the
    store knows as used, plus those reserved by writes in flight and by the
    parts of open multipart uploads (every daemon's), plus this one, would
    exceed it.  Nothing was written; placement tries another backend.
    """

    def __init__(self, backend: str, used: int, reserved: int, size: int, max_size: int) -> None:
        super().__init__(f"{backend}: {used} used + {reserved} reserved + {size} > max_size {max_size}")
        self.backend = backend
        self.used = used
        self.reserved = reserved
        self.size = size
        self.max_size = max_size


class QuotaExceeded(StoreError):
    """
    A write's reservation does not fit its virtual bucket's quota: the bytes
    (or objects) the bucket holds, plus those reserved by writes in flight
    and by open multipart uploads (every daemon's), plus this one, would
    exceed it.  Nothing was recorded.  C{limit} names the quota that would
    be exceeded: C{"max_size"} (bytes) or C{"max_objects"}.
    """

    def __init__(self, bucket: str, limit: str, used: int, reserved: int, wanted: int, maximum: int) -> None:
        unit = "bytes" if limit == "max_size" else "objects"
        super().__init__(
            f"{bucket}: {used} {unit} used + {reserved} reserved + {wanted} > quota {limit} {maximum}"
        )
        self.bucket = bucket
        self.limit = limit
        self.used = used
        self.reserved = reserved
        self.wanted = wanted
        self.maximum = maximum


class ConfigQuotaError(StoreError):
    """A change, through the admin API, of a quota that the configuration file sets."""


@attr.s(frozen=True, auto_attribs=True)
class Quota:
    """A virtual bucket's quota: at most C{max_bytes} bytes and C{max_objects} objects (None: no limit)."""

    max_bytes: Optional[int] = None
    max_objects: Optional[int] = None

    @property
    def limited(self) -> bool:
        return self.max_bytes is not None or self.max_objects is not None


@attr.s(frozen=True, auto_attribs=True)
class BucketUsage:
    """
    What a virtual bucket holds (exact: kept by every commit and delete),
    what writes in flight and open multipart uploads reserve there, and its
    quota (None: no limit) with who set it (C{quota_origin} "config", "api"
    or None without a quota).
    """

    bucket: str
    origin: str  # the bucket's: "config" or "api"
    used_bytes: int
    object_count: int
    reserved_bytes: int = 0
    reserved_objects: int = 0
    quota_bytes: Optional[int] = None
    quota_objects: Optional[int] = None
    quota_origin: Optional[str] = None

    @property
    def quota(self) -> Quota:
        return Quota(self.quota_bytes, self.quota_objects)


# A tag set (object or bucket): (key, value) pairs sorted by key, keys unique.
TagSet = tuple[tuple[str, str], ...]


@attr.s(frozen=True, auto_attribs=True)
class UsageRecount:
    """A virtual bucket's usage counters before and after a recount from its object rows."""

    bucket: str
    bytes_before: int
    objects_before: int
    bytes_after: int
    objects_after: int

    @property
    def changed(self) -> bool:
        return (self.bytes_before, self.objects_before) != (self.bytes_after, self.objects_after)


@attr.s(frozen=True, auto_attribs=True)
class Location:
    """Where one copy of an object lives: a backend (real bucket) name and the key there."""

    backend: str
    real_key: str


@attr.s(frozen=True, auto_attribs=True)
class ObjectRecord:
    bucket: str
    key: str
    size: int
    etag: str  # as the backend returned it, with quotes: '"abc..."' or '"abc-3"'
    last_modified: datetime.datetime  # timezone-aware UTC, whole seconds
    content_type: Optional[str]
    # Stored response headers, lower-case names: content-encoding,
    # content-disposition, cache-control, expires, content-language and x-amz-meta-*.
    headers: Mapping[str, str]
    # Checksums the client sent and we verified: {"crc32": "<b64>", ...}
    checksums: Mapping[str, str]
    locations: tuple[Location, ...]
    id: int = 0
    # The version's tags (x-amz-tagging, PutObjectTagging): an overwrite
    # replaces them.  Listings leave them out (as they leave the locations).
    tags: TagSet = ()
    # The version's ACL as s3balance.s3.acl.dump writes it (None: private):
    # an overwrite replaces it.  Listings leave it out too.
    acl: Optional[str] = None
    # The version's id (None: the "null" version) and whether it is a
    # delete marker (store/versions.py).
    version_id: Optional[str] = None
    delete_marker: bool = False
    # The version's Object Lock (s3.object_lock): retention mode
    # ("GOVERNANCE", "COMPLIANCE"; None: none) and its retain-until date,
    # and legal hold.  The store refuses to remove a version they protect.
    lock_mode: Optional[str] = None
    lock_until: Optional[datetime.datetime] = None
    legal_hold: bool = False


@attr.s(frozen=True, auto_attribs=True)
class BucketRecord:
    name: str
    created: datetime.datetime
    origin: str  # "config" or "api"
    tags: TagSet = ()  # PutBucketTagging's (empty: no tag set)
    # The owning account's id as recorded (None: the configured default
    # owner; a configured bucket's owner is the configuration's, see
    # s3balance.s3.access.bucket_owner).
    owner: Optional[str] = None
    # Its ACL as s3balance.s3.acl.dump writes it (None: private; a
    # configured bucket's is the configuration's, s3.access.bucket_acl).
    acl: Optional[str] = None
    # Its policy document and Block Public Access flags as kept
    # (store/policies.py; None: none), read with the bucket so that every
    # request is decided on the current ones (the policy by get_bucket
    # only: listings of buckets leave it None).
    policy: Optional[str] = None
    public_access_block: Optional[str] = None
    # PutBucketVersioning's status: None (never enabled), "Enabled" or "Suspended".
    versioning: Optional[str] = None
    # Its Object Lock configuration (s3.object_lock.dump's text; None: not enabled).
    object_lock: Optional[str] = None


@attr.s(frozen=True, auto_attribs=True)
class Deletion:
    """What a DeleteObject did to a key's versions (store/versions.py)."""

    # The version removed for good (its locations queued for deletion), or None.
    removed: Optional[ObjectRecord] = None
    # The delete marker added (a versioned bucket, no version id named), or None.
    marker: Optional[ObjectRecord] = None
    # DeleteObjects: the version named is protected by Object Lock and stays
    # (a single DeleteObject raises ObjectLocked instead).
    locked: bool = False


@attr.s(frozen=True, auto_attribs=True)
class LifecycleVersion:
    """
    A version the lifecycle expirer may remove (store/lifecycle.py): a
    noncurrent version (or noncurrent delete marker), or a delete marker
    that is its key's only version.  What its rules need, as read.
    """

    # The version, with its tags, without its locations.
    record: ObjectRecord
    # The row id of the key's next newer version, and that version's
    # Last-Modified: when this one became noncurrent.  None: this one is a
    # delete marker and its key's only version.
    successor_id: Optional[int] = None
    noncurrent_since: Optional[datetime.datetime] = None
    # How many noncurrent versions of the key are newer than this one.
    newer_noncurrent: int = 0

    @property
    def lone_marker(self) -> bool:
        return self.successor_id is None


@attr.s(frozen=True, auto_attribs=True)
class VersionPage:
    """A page of ListObjectVersions: versions and delete markers, each with whether it is its key's newest."""

    versions: tuple[tuple[ObjectRecord, bool], ...]
    common_prefixes: tuple[str, ...]
    truncated: bool
    # Where the next page starts (the last entry's key or common prefix, and its version id).
    next_key_marker: str = ""
    next_version_id_marker: Optional[str] = None


@attr.s(frozen=True, auto_attribs=True)
class ListPage:
    """
    One page of a listing.

    C{entries} interleaves, in S3 byte order, L{ObjectRecord}s (without
    locations needed) and common prefixes (plain C{str}).  C{next_marker} is
    the last key or common prefix in C{entries} when C{is_truncated}.
    """

    entries: tuple  # tuple[ObjectRecord | str, ...]
    is_truncated: bool
    next_marker: Optional[str]


@attr.s(frozen=True, auto_attribs=True)
class WriteIntent:
    id: int
    backend: str
    real_key: str


@attr.s(frozen=True, auto_attribs=True)
class QueuedDeletion:
    id: int
    backend: str
    real_key: str
    # When set, this is an incomplete multipart upload to abort rather than an object.
    backend_upload_id: Optional[str]
    attempts: int
    # Why it was queued: replaced, deleted, abandoned, lease-expired, multipart-aborted.
    reason: str = ""


@attr.s(frozen=True, auto_attribs=True)
class BackendUsage:
    backend: str
    used_bytes: int
    object_count: int


@attr.s(frozen=True, auto_attribs=True)
class MultipartRecord:
    upload_id: str  # ours, handed to clients; never the backend's
    bucket: str
    key: str
    backend: str
    real_key: str
    backend_upload_id: str
    initiated: datetime.datetime
    content_type: Optional[str]
    headers: Mapping[str, str]
    tags: TagSet = ()  # CreateMultipartUpload's x-amz-tagging: the object's at Complete
    acl: Optional[str] = None  # CreateMultipartUpload's ACL (s3.acl.dump): the object's at Complete
    # CreateMultipartUpload's Object Lock: the object's at Complete.
    lock_mode: Optional[str] = None
    lock_until: Optional[datetime.datetime] = None
    legal_hold: bool = False


@attr.s(frozen=True, auto_attribs=True)
class PartRecord:
    """A part of a multipart upload as received (L{s3balance.store.parts})."""

    number: int
    size: int
    etag: str
    checksums: Mapping[str, str]


@attr.s(frozen=True, auto_attribs=True)
class CompletedUpload:
    """A multipart upload completed lately and what its Complete answered."""

    upload_id: str
    bucket: str
    key: str
    etag: str
    checksums: Mapping[str, str]
    completed: datetime.datetime


@attr.s(frozen=True, auto_attribs=True)
class LeaseState:
    """Who holds C{job}'s lease and whether it is still live by the database's clock."""

    job: str
    holder: str
    live: bool


@attr.s(frozen=True, auto_attribs=True)
class JobPause:
    """A paused cluster-wide job: since when (the daemon's clock), by whom and why, as the admin API was told."""

    job: str
    paused_at: datetime.datetime
    paused_by: Optional[str] = None
    reason: Optional[str] = None


@attr.s(frozen=True, auto_attribs=True)
class OperationCounts:
    """Requests sent to one backend in one calendar month (UTC), by S3 pricing class."""

    backend: str
    month: str  # 'YYYY-MM'
    type_a: int
    type_b: int


class IMetadataStore(Interface):
    url = Attribute("The SQLAlchemy URL (password masked when printed).")

    def start() -> Deferred[None]:
        """Start the thread pool, create the engine, run migrations when asked. -> Deferred[None]"""

    def stop() -> Deferred[None]:
        """Stop the thread pool and dispose of the engine. -> Deferred[None]"""

    # -- buckets ----------------------------------------------------------
    def sync_config_buckets(names: Sequence[str], quotas: Optional[Mapping[str, Quota]] = None) -> Deferred[None]:
        """Ensure a bucket row (origin 'config') for each name; the configured
        C{quotas} (bucket name -> L{Quota}) become those buckets' quotas (origin
        'config'), and a quota of origin 'config' that the configuration no
        longer sets is removed; quotas set through the API stay. -> Deferred[None]"""

    def list_buckets() -> Deferred[list[BucketRecord]]:
        """-> Deferred[list[BucketRecord]] sorted by name."""

    def get_bucket(name: str) -> Deferred[Optional[BucketRecord]]:
        """-> Deferred[BucketRecord | None]"""

    def create_bucket(name: str, owner: Optional[str] = None, acl: Optional[str] = None,
                      object_lock: Optional[str] = None) -> Deferred[BucketRecord]:
        """origin 'api', owned by the account C{owner} (None: the default
        owner), with the ACL C{acl} (s3.acl.dump's text; None: private);
        with C{object_lock} (s3.object_lock's text), Object Lock enabled and
        so versioning Enabled.  -> Deferred[BucketRecord]; fails with BucketExists."""

    def set_bucket_owner(name: str, owner: Optional[str]) -> Deferred[bool]:
        """Record C{owner} as the bucket's owner (None: the default owner).
        -> Deferred[bool] (False: no such bucket row)."""

    def delete_bucket(name: str) -> Deferred[int]:
        """Only origin 'api' and only without objects; its open multipart
        uploads are aborted (backend aborts queued) in the same transaction.
        -> Deferred[int] (uploads aborted); fails with BucketNotEmpty /
        NoSuchBucketError, and with ConfigBucketError for a bucket of origin
        'config'."""

    # -- writes -----------------------------------------------------------
    def begin_write(backend: str, real_key: str, lease_seconds: float, size: int = 0,
                    max_size: Optional[int] = None, bucket: Optional[str] = None,
                    objects: int = 0) -> Deferred[WriteIntent]:
        """Record the intent to write real_key on backend. -> Deferred[WriteIntent]

        real_key must be new for every write (e.g. carry a random part): a
        reused real key may still have a queued deletion from an earlier
        version (delete or replace) that the worker can carry out after the
        new data landed, and no database check can close that race.

        The intent reserves C{size} bytes on backend until it is taken.  With
        C{max_size} the reservation is checked against it in the same
        transaction, race-free across daemons: fails with BackendFull (and
        records nothing) when it does not fit.

        C{bucket} is the virtual bucket written to and C{objects} the objects
        the write reserves there (1 for an object, 0 for a part); both count
        against the bucket's quota until the intent is taken.  When the store
        knows the bucket has a quota (bucket_usage, set_bucket_quota and
        sync_config_buckets tell it; a quota set by another daemon is known
        from the next bucket_usage), the reservation is checked against it in
        the same transaction, race-free across daemons: fails with
        QuotaExceeded (and records nothing) when it does not fit."""

    def grow_write(intent_id: int, backend: str, size: int, max_size: Optional[int] = None,
                   bucket: Optional[str] = None) -> Deferred[None]:
        """Reserve C{size} more bytes under a running write's intent (an upload
        of unknown length, part by part), checked like begin_write's (C{bucket}:
        the intent's).  -> Deferred[None]; fails with BackendFull, QuotaExceeded
        or WriteIntentExpired."""

    def record_part(intent_id: int, upload_id: str, size: int) -> Deferred[None]:
        """An UploadPart whose intent reserved C{size} bytes succeeded: take the
        intent and keep the bytes reserved in the multipart upload's row until
        it is completed or aborted. -> Deferred[None]; WriteIntentExpired when
        the intent is gone."""

    def touch_multipart(upload_id: str) -> Deferred[None]:
        """An upload received a part by UploadPartCopy (its idle time starts again). -> Deferred[None]"""

    def renew_write(intent_id: int, lease_seconds: float) -> Deferred[None]:
        """Extend the lease of a running write. -> Deferred[None]; fails with
        WriteIntentExpired when the intent is gone (the write must stop)."""

    def abandon_write(intent_id: int, backend_object_may_exist: bool) -> Deferred[None]:
        """The write failed.  When the backend may hold (part of) the object,
        the intent becomes a queued deletion; otherwise it is just dropped.
        -> Deferred[None]"""

    def commit_object(
        intent_id: int,
        record: ObjectRecord,
        if_match: Optional[str] = None,
        if_none_match: Optional[str] = None,
        also: Sequence[int] = (),
    ) -> Deferred[ObjectRecord]:
        """In one transaction: insert or replace the (bucket, key) row with
        record (its locations included), delete the intent (and C{also}, the
        intents of its other copies written at once), queue the replaced
        version's locations for deletion, add the difference to the bucket's
        usage (bucket_usage).  if_match / if_none_match ('*' or an
        ETag) are checked against the current row inside the transaction and
        raise PreconditionFailedError.  -> Deferred[ObjectRecord] (with id).
        Fails with WriteIntentExpired when the intent is gone (its real key is
        queued for deletion, so the data must not be referenced) and with
        NoSuchBucketError when the bucket row is missing; in both cases nothing
        is written."""

    def get_object(bucket: str, key: str) -> Deferred[Optional[ObjectRecord]]:
        """-> Deferred[ObjectRecord | None] with its locations."""

    def set_object_tags(bucket: str, key: str, tags: TagSet) -> Deferred[bool]:
        """Replace the tags of the object's current version with C{tags}
        (empty: remove them); nothing else of its row changes (ETag,
        Last-Modified, locations). -> Deferred[bool] (False: no such object)."""

    def set_object_acl(bucket: str, key: str, acl: Optional[str]) -> Deferred[bool]:
        """Replace the ACL of the object's current version with C{acl}
        (s3.acl.dump's text; None: private); nothing else of its row
        changes. -> Deferred[bool] (False: no such object)."""

    def set_bucket_acl(name: str, acl: Optional[str]) -> Deferred[bool]:
        """Replace the bucket's ACL (s3.acl.dump's text; None: private).
        -> Deferred[bool] (False: no such bucket row)."""

    def set_bucket_tags(name: str, tags: TagSet) -> Deferred[bool]:
        """Replace the bucket's tag set (empty: remove it).
        -> Deferred[bool] (False: no such bucket row)."""

    def delete_object(bucket: str, key: str, expected: Optional[ObjectRecord] = None,
                      version_id: Optional[str] = None, bypass_governance: bool = False) -> Deferred[Deletion]:
        """DeleteObject.  With C{version_id} ("null" or an id): remove that
        version for good (its locations queued for deletion); when it was
        the key's newest, the next one becomes the latest.  Without, in a
        versioned bucket: add a delete marker (a null one when suspended,
        replacing the null version).  Without, in a bucket never versioned:
        remove the row, queue its locations for deletion.  The bucket's
        usage follows.  With C{expected}, only while the latest version is
        still the one C{expected} was read from (same ETag, size,
        Last-Modified and tags): the lifecycle expirer's delete never takes
        a newer write.  A version protected by Object Lock stays: fails with
        ObjectLocked (GOVERNANCE retention gives way to C{bypass_governance}).
        -> Deferred[Deletion]."""

    def set_retention(bucket: str, key: str, version_id: Optional[str], mode: Optional[str],
                      until: Optional[datetime.datetime],
                      bypass_governance: bool = False) -> Deferred[Optional[ObjectRecord]]:
        """PutObjectRetention on a version (None: the key's newest): a running
        retention is never weakened nor changed to the other mode
        (ObjectLocked; GOVERNANCE gives way to C{bypass_governance}).
        -> Deferred[the version as it was, with its locations as of the
        change | None]."""

    def set_legal_hold(bucket: str, key: str, version_id: Optional[str], on: bool) -> Deferred[Optional[ObjectRecord]]:
        """PutObjectLegalHold on a version (None: the key's newest).
        -> Deferred[the version as it was, with its locations as of the
        change | None]."""

    def set_object_lock(name: str, text: str) -> Deferred[Optional[str]]:
        """PutObjectLockConfiguration (s3.object_lock's text) on a bucket whose
        versioning is Enabled.  -> Deferred[None | "NoSuchBucket" | "InvalidBucketState"]."""

    # -- versions (s3balance.store.versions) ------------------------------
    def set_bucket_versioning(name: str, status: str) -> Deferred[bool]:
        """PutBucketVersioning: "Enabled" or "Suspended"; writes under way
        finish under the old status.  -> Deferred[bool] (False: no such bucket row)."""

    def get_version(bucket: str, key: str, version_id: Optional[str]) -> Deferred[Optional[ObjectRecord]]:
        """A version with its locations, delete markers included: C{version_id}
        None is the key's newest version, "null" the null version.
        -> Deferred[ObjectRecord | None]."""

    def set_version_tags(bucket: str, key: str, version_id: str, tags: TagSet) -> Deferred[Optional[bool]]:
        """Replace one version's tags. -> Deferred[True | False (a delete
        marker) | None (no such version)]."""

    def set_version_acl(bucket: str, key: str, version_id: str, acl: Optional[str]) -> Deferred[Optional[bool]]:
        """Replace one version's ACL, as set_version_tags."""

    def list_versions(bucket: str, prefix: str, delimiter: str, key_marker: str,
                      version_id_marker: Optional[str], max_keys: int) -> Deferred[VersionPage]:
        """ListObjectVersions: versions and delete markers key by key, each
        key's newest first, folded by delimiter; skip-scans common prefixes.
        -> Deferred[VersionPage]."""

    # -- lifecycle (s3balance.store.lifecycle, s3balance.ops.lifecycle) --------
    def set_bucket_lifecycle(name: str, text: Optional[str]) -> Deferred[bool]:
        """Replace the bucket's lifecycle configuration, kept as text
        (s3.lifecycle_rules.dump; None: remove it).  It goes with its bucket.
        -> Deferred[bool] (False: no such bucket row)."""

    def get_bucket_lifecycle(name: str) -> Deferred[Optional[str]]:
        """-> Deferred[str | None]: the bucket's configuration text."""

    def lifecycle_buckets() -> Deferred[list[tuple[str, str]]]:
        """-> Deferred[list[(bucket, configuration text)]] of every bucket with one, by name."""

    def lifecycle_page(bucket: str, prefix: str, after: str, limit: int) -> Deferred[list[ObjectRecord]]:
        """Up to C{limit} objects of C{bucket} whose key starts with C{prefix}
        and sorts after C{after} (byte order), in key order, with their tags
        and without their locations. -> Deferred[list[ObjectRecord]]"""

    def lifecycle_versions_page(
        bucket: str, prefix: str, after_key: str, after_id: int, limit: int
    ) -> Deferred[list[LifecycleVersion]]:
        """Up to C{limit} noncurrent versions (delete markers included) and
        delete markers that are their key's only version, of C{bucket}'s
        keys that start with C{prefix}, after (C{after_key}, C{after_id}),
        in (key, row id) order: each with its tags, without its locations,
        with when it became noncurrent and how many noncurrent versions of
        its key are newer.  -> Deferred[list[LifecycleVersion]]"""

    def expire_version(bucket: str, version: LifecycleVersion) -> Deferred[Deletion]:
        """Remove C{version} (as L{lifecycle_versions_page} read it) by
        C{delete_object} with its version id, in one transaction, only while
        it is still as read: the same row, tags, next newer version and at
        least as many newer ones, or still its key's only version.  A version
        made current again or replaced meanwhile is kept.  What
        C{delete_object} raises for a version it must keep, it raises.
        -> Deferred[Deletion] (nothing removed: no longer as read)."""

    # -- bucket policies and Block Public Access (s3balance.store.policies) ----
    def set_bucket_policy(name: str, text: Optional[str]) -> Deferred[bool]:
        """Replace the bucket's policy, kept as the document received
        (checked by s3.policy_document; None: remove it).  It goes with its bucket.
        -> Deferred[bool] (False: no such bucket row)."""

    def set_public_access_block(name: str, text: Optional[str]) -> Deferred[bool]:
        """Replace the bucket's Block Public Access configuration, kept as
        text (s3.public_access_block.PublicAccessBlock.dump; None: remove it).
        -> Deferred[bool] (False: no such bucket row)."""

    def delete_objects(
        bucket: str, items: Sequence[tuple[str, Optional[str]]], bypass_governance: bool = False
    ) -> Deferred[dict[tuple[str, Optional[str]], Deletion]]:
        """delete_object for many (key, version id or None) in one transaction;
        a version Object Lock protects stays (its Deletion says C{locked}).
        -> Deferred[dict[(key, version id), Deletion]]."""

    def list_objects(
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        max_keys: int = 1000,
    ) -> Deferred[ListPage]:
        """Objects of bucket whose key starts with prefix and is > after (byte
        order), folded by delimiter into common prefixes (a common prefix that
        is <= after is skipped; a prefix that after falls inside is also
        skipped when after >= that prefix).  At most max_keys entries (objects
        + prefixes).  Must not read the rows inside a common prefix (skip-scan).
        -> Deferred[ListPage]"""

    # -- cleanup ----------------------------------------------------------
    def expired_writes(limit: int = 100) -> Deferred[int]:
        """Intents whose lease ran out -> moved to the deletion queue.
        -> Deferred[int] (how many moved)."""

    def queued_deletions(limit: int = 100) -> Deferred[list[QueuedDeletion]]:
        """-> Deferred[list[QueuedDeletion]] due now."""

    def finish_deletion(deletion_id: int) -> Deferred[None]:
        """-> Deferred[None]"""

    def is_referenced(backend: str, real_key: str) -> Deferred[bool]:
        """
        Whether a live record (an object's location, a write intent, a
        multipart upload) refers to this backend object, which must then not
        be deleted.  -> Deferred[bool]
        """

    def retry_deletion_later(deletion_id: int, delay_seconds: float) -> Deferred[None]:
        """Bump attempts and push the due time. -> Deferred[None]"""

    # -- usage ------------------------------------------------------------
    def backend_usage() -> Deferred[list[BackendUsage]]:
        """Bytes and objects per backend, from the location rows (an aggregate
        query, never a walk of a backend).  -> Deferred[list[BackendUsage]]"""

    # -- virtual buckets' usage and quotas ----------------------------------
    def bucket_usage() -> Deferred[list[BucketUsage]]:
        """Every bucket's usage (kept exact by every commit and delete, in
        their transactions), reservations and quota, by name; the store
        learns from it which buckets have a quota. -> Deferred[list[BucketUsage]]"""

    def recount_bucket_usage(name: str) -> Deferred[UsageRecount]:
        """Set a bucket's usage counters to what its object rows add up to,
        in one transaction that new commits and deletes of the bucket wait
        for (L{s3balance.store.quotas.recount_usage}); reservations are left
        as they are.  -> Deferred[UsageRecount]; fails with NoSuchBucketError."""

    def set_bucket_quota(name: str, max_bytes: Optional[int], max_objects: Optional[int]) -> Deferred[BucketUsage]:
        """Set (origin 'api') or, both None, remove a bucket's quota.  A lower
        quota than the bucket's usage refuses new writes and leaves what is
        stored.  -> Deferred[BucketUsage]; fails with NoSuchBucketError, and
        with ConfigQuotaError when the configuration sets that quota."""

    # -- multipart (the schema exists from the first migration) ------------
    def create_multipart(record: MultipartRecord, intent_id: int | None = None) -> Deferred[None]:
        """-> Deferred[None]; with C{intent_id}, that write intent is settled
        in the same transaction (WriteIntentExpired when it is gone).
        NoSuchBucketError when the bucket row is missing (it is share-locked
        as by commit_object, against a concurrent delete_bucket): nothing is
        recorded and the intent stays."""

    def get_multipart(upload_id: str) -> Deferred[Optional[MultipartRecord]]:
        """-> Deferred[MultipartRecord | None]"""

    def list_multipart(
        bucket: str, prefix: str = "", key_marker: str = "", upload_id_marker: str = "", max_uploads: int = 1000
    ) -> Deferred[list[MultipartRecord]]:
        """-> Deferred[list[MultipartRecord]] ordered by (key, initiated, upload_id)."""

    def list_multipart_page(bucket: str, prefix: str = "", delimiter: str = "", key_marker: str = "",
                            upload_id_marker: str = "", max_uploads: int = 1000) -> Deferred[ListPage]:
        """-> Deferred[ListPage] of ListMultipartUploads: MultipartRecords and
        common prefixes (str), folded on UTF-8 bytes; see store.multipart."""

    def complete_multipart(upload_id: str, record: ObjectRecord, if_match: Optional[str] = None,
                           if_none_match: Optional[str] = None,
                           object_parts: Sequence[PartRecord] = ()) -> Deferred[ObjectRecord]:
        """One transaction: delete the multipart row and its parts' records,
        insert/replace the object (queueing the old version's locations),
        remember the outcome for a retried Complete (completed_upload).
        -> Deferred[ObjectRecord]; fails with NoSuchUploadError when the
        upload row is gone (aborted), PreconditionFailedError as commit_object.
        C{object_parts} (L{PartRecord}) are kept as the object's parts
        (object_parts_page) until its backend copy is deleted."""

    def record_part_checksums(
        upload_id: str, number: int, size: int, etag: str, checksums: Mapping[str, str]
    ) -> Deferred[None]:
        """Record (or replace) part C{number} of an upload as received: its
        size, ETag and verified checksums. -> Deferred[None]"""

    def multipart_parts(upload_id: str) -> Deferred[list[PartRecord]]:
        """-> Deferred[list[PartRecord]] in part number order."""

    def completed_upload(upload_id: str) -> Deferred[Optional[CompletedUpload]]:
        """-> Deferred[CompletedUpload | None]: an upload completed
        lately (store.parts.COMPLETED_KEPT) and what its Complete made."""

    def object_parts_page(
        real_key: str, marker: int, max_parts: int
    ) -> Deferred[tuple[list[PartRecord], bool]]:
        """-> Deferred[(list[PartRecord], truncated)]: the parts of
        the multipart object at C{real_key} numbered above C{marker}."""

    def abort_multipart(upload_id: str, queue_backend_abort: bool) -> Deferred[Optional[MultipartRecord]]:
        """Delete the multipart row; when queue_backend_abort, queue a
        deletion with backend_upload_id so the worker aborts it on the backend.
        -> Deferred[MultipartRecord | None]"""

    def stale_multipart(older_than: datetime.datetime, limit: int = 100) -> Deferred[list[MultipartRecord]]:
        """-> Deferred[list[MultipartRecord]]"""

    # -- operation counters (monthly, per backend) --------------------------
    def count_operations(
        backend: str, type_a_delta: int, type_b_delta: int, when: Optional[datetime.datetime] = None
    ) -> Deferred[None]:
        """Add to the counters of backend for the month of when (default now,
        UTC).  Safe with several daemons on one database (an upsert).
        -> Deferred[None]"""

    def operation_counts(month: str) -> Deferred[list[OperationCounts]]:
        """month 'YYYY-MM' -> Deferred[list[OperationCounts]] sorted by backend."""

    # -- cluster-wide background jobs (s3balance.ops.background) ---------------
    def acquire_lease(job: str, holder: str, seconds: float) -> Deferred[bool]:
        """Take or renew C{job}'s lease for C{holder} until the database's
        now plus C{seconds}: only when it is expired, missing or already
        C{holder}'s.  -> Deferred[bool] (whether C{holder} holds it now)."""

    def release_lease(job: str, holder: str) -> Deferred[bool]:
        """Give up C{job}'s lease if C{holder} holds it. -> Deferred[bool]"""

    def lease_state(job: str) -> Deferred[Optional[LeaseState]]:
        """-> Deferred[LeaseState | None]: holder and whether
        the lease is live by the database's clock."""

    def pause_job(job: str, paused_by: Optional[str] = None, reason: Optional[str] = None) -> Deferred[JobPause]:
        """Pause cluster-wide job C{job} (s3balance.ops.pauses): no daemon
        runs it until L{resume_job}.  A job paused already stays as it was
        (its first pause's time, author and reason). -> Deferred[JobPause]"""

    def resume_job(job: str) -> Deferred[bool]:
        """Undo L{pause_job}. -> Deferred[bool] (whether C{job} was paused)."""

    def paused_jobs() -> Deferred[list[JobPause]]:
        """Every paused job, by name. -> Deferred[list[JobPause]]"""

    def postpone_deletions(backend: str, delay_seconds: float) -> Deferred[int]:
        """Push the due queued deletions of C{backend} (down) C{delay_seconds}
        later, attempts unchanged. -> Deferred[int] (how many)."""

    def add_backend_usage(deltas: dict[str, tuple[int, int]]) -> Deferred[list[BackendUsage]]:
        """Add (bytes, objects) deltas per backend to the stored usage, safe
        with several daemons (upserts). -> Deferred[list[BackendUsage]] (all
        rows afterwards)."""

    def stored_backend_usage() -> Deferred[list[BackendUsage]]:
        """The stored usage rows (cheap: one row per backend).
        -> Deferred[list[BackendUsage]]"""

    def reconcile_backend_usage() -> Deferred[list[BackendUsage]]:
        """Replace the stored usage with L{backend_usage}'s aggregate (a join
        over every location: rare, one daemon). -> Deferred[list[BackendUsage]]"""

    # -- drains (s3balance.store.moves, s3balance.ops.drain) --------------------
    def start_drain(backend: str, rate: Optional[int] = None) -> Deferred[DrainRecord]:
        """Start draining C{backend} (state 'draining'), its totals counted
        from the locations; C{rate} bytes/s (None: the configured default, 0:
        unlimited).  A drain that is under way (draining or paused) is kept
        as it is, its rate set when C{rate} is given; a finished one starts
        again.  -> Deferred[DrainRecord]"""

    def set_drain_state(backend: str, state: str) -> Deferred[Optional[DrainRecord]]:
        """Pause ('paused') or resume ('draining') a drain under way.
        -> Deferred[DrainRecord | None] (None: no drain of C{backend}); fails
        with DrainStateError when the drain is done."""

    def set_drain_rate(backend: str, rate: Optional[int]) -> Deferred[Optional[DrainRecord]]:
        """Set a drain's rate (bytes/s; None: the configured default; 0:
        unlimited). -> Deferred[DrainRecord | None]"""

    def cancel_drain(backend: str) -> Deferred[Optional[DrainRecord]]:
        """Forget C{backend}'s drain (it may receive new objects again; what
        moved stays moved). -> Deferred[DrainRecord | None] (the removed one)."""

    def drains() -> Deferred[list[DrainRecord]]:
        """Every drain, by backend. -> Deferred[list[DrainRecord]]"""

    def drain_candidates(backend: str, after: int, limit: int) -> Deferred[list[MoveCandidate]]:
        """Up to C{limit} objects with a location on C{backend} whose
        C{cursor} is above C{after}, in cursor order (a pass goes through the
        backend's locations once).  -> Deferred[list[MoveCandidate]]"""

    def switch_location(intent_id: int, candidate: MoveCandidate, target: Location) -> Deferred[str]:
        """In one transaction: take write intent C{intent_id} (of the copy at
        C{target}) and, when the object still has C{candidate.source} as a
        location, replace that location with C{target}, queue the source copy
        for deletion after the deletion grace, keep the object's part records
        under the new real key and count the move in the backend's drain:
        'moved'.  When the object was deleted or overwritten meanwhile, the
        copy at C{target} is queued for deletion instead: 'stale'.  When the
        intent is gone (its lease ran out: the copy is queued already):
        'expired'.  -> Deferred[str]"""

    def recount_drain(backend: str, blocked: Optional[int] = None) -> Deferred[Optional[DrainRecord]]:
        """Count what still refers to a draining backend (locations, writes
        in flight, open multipart uploads, queued deletions) into its drain;
        with nothing left, the drain is 'done'.  C{blocked} (at the end of a
        pass): the objects it left because no other backend can hold another
        copy; when they are all that is left the drain is 'blocked'.
        -> Deferred[DrainRecord | None]"""

    def note_drain_progress(backend: str, active_seconds: float, failed: int,
                            error: Optional[str]) -> Deferred[None]:
        """Add C{active_seconds} of moving and C{failed} failed moves to a
        drain; C{error} (when not None) becomes its last error, "" clears it.
        -> Deferred[None]"""

    # -- the rebalance (s3balance.store.rebalance, s3balance.ops.rebalance) ------
    def start_rebalance(margin: float, rate: Optional[int] = None) -> Deferred[RebalanceRecord]:
        """Start a rebalance (state 'running'; a finished one is replaced), or
        set the margin (and C{rate}, bytes/s, when given; None: the configured
        default; 0: unlimited) of the one under way, whose state is kept.
        -> Deferred[RebalanceRecord]"""

    def rebalance() -> Deferred[Optional[RebalanceRecord]]:
        """The rebalance (any state), or None. -> Deferred[RebalanceRecord | None]"""

    def set_rebalance_state(state: str, rate: Optional[int] = None) -> Deferred[Optional[RebalanceRecord]]:
        """Pause ('paused') or resume ('running') the rebalance under way, its
        rate set when given.  -> Deferred[RebalanceRecord | None]; fails with
        RebalanceStateError when it is done or cancelled."""

    def cancel_rebalance() -> Deferred[Optional[RebalanceRecord]]:
        """The rebalance under way becomes 'cancelled' (what moved stays
        moved). -> Deferred[RebalanceRecord | None]; RebalanceStateError when
        it is done or cancelled already."""

    def note_rebalance_progress(active_seconds: float, failed: int, error: Optional[str],
                                spread: Optional[float] = None, remaining_bytes: Optional[int] = None,
                                finished: bool = False) -> Deferred[Optional[RebalanceRecord]]:
        """Add C{active_seconds} of moving and C{failed} failed moves; C{error}
        (when not None) becomes the last error, "" clears it; the mover's
        measure (the spread of the fractions, the bytes still to move) when
        given; with C{finished} a running rebalance is 'done'.
        -> Deferred[RebalanceRecord | None]"""

    def rebalance_switch(intent_id: int, candidate: MoveCandidate, target: Location) -> Deferred[str]:
        """L{switch_location}, and when it moved the object the move counted
        in the rebalance, in one transaction. -> Deferred[str]"""

    def backends_in_use(names: Sequence[str]) -> Deferred[list[str]]:
        """Those of C{names} that an object's location refers to (one indexed
        lookup each). -> Deferred[list[str]]"""

    def add_location(intent_id: int, record: ObjectRecord, source: Location, target: Location) -> Deferred[str]:
        """In one transaction: take write intent C{intent_id} (of a copy at
        C{target} read from C{source}) and, when C{record}'s object is still
        that version (same ETag and size), still has C{source} and has no
        location on C{target.backend}, add C{target} as one more location:
        'added'.  Otherwise the copy is queued for deletion: 'stale'.  The
        intent gone: 'expired'.  -> Deferred[str]"""

    def drop_location(record: ObjectRecord, location: Location) -> Deferred[bool]:
        """In one transaction: when C{record}'s object is still that version
        and has another location, remove C{location} and queue its copy for
        deletion; a last copy is never dropped. -> Deferred[bool] (dropped)"""

    def under_replicated(
        bucket: str, replicas_wanted: int, after: int, limit: int, backends: Optional[Sequence[str]] = None
    ) -> Deferred[tuple[list[ObjectRecord], int]]:
        """Of the next C{limit} objects of C{bucket} after object id C{after},
        those with fewer than C{replicas_wanted} locations (counting only
        those on C{backends}, when given; each with all its locations), and
        the cursor of the next page (C{after} at the end).
        -> Deferred[(records, cursor)]"""


class DrainStateError(StoreError):
    """A change of a drain's state that its state does not allow (pausing a finished drain)."""


@attr.s(frozen=True, auto_attribs=True)
class DrainRecord:
    """
    A backend's drain: its state ('draining', 'paused', 'done'), rate limit
    (bytes/s; None: the configured default; 0: unlimited), what it held at
    the start, what moved, what remains (counted at each pass, less what
    moved since) and what else still refers to it.
    """

    backend: str
    state: str
    rate: Optional[int]
    started: datetime.datetime
    updated: datetime.datetime
    finished: Optional[datetime.datetime] = None
    total_objects: int = 0
    total_bytes: int = 0
    moved_objects: int = 0
    moved_bytes: int = 0
    remaining_objects: int = 0
    remaining_bytes: int = 0
    pending_writes: int = 0
    pending_uploads: int = 0
    pending_deletions: int = 0
    failed_objects: int = 0
    active_seconds: float = 0.0
    last_error: Optional[str] = None
    # Left by the last pass: no other backend can hold another copy of them.
    blocked_objects: int = 0


@attr.s(frozen=True, auto_attribs=True)
class MoveCandidate:
    """
    An object to move off a draining backend: its record (with every
    location) and the location on that backend (C{source}); C{cursor}
    orders a pass over the backend's locations.
    """

    cursor: int
    record: ObjectRecord
    source: Location


class RebalanceStateError(StoreError):
    """A change of the rebalance's state that its state does not allow (pausing a finished one)."""


@attr.s(frozen=True, auto_attribs=True)
class RebalanceRecord:
    """
    The cluster's rebalance: its state ('running', 'paused', 'done',
    'cancelled'), margin (balanced: the used fractions at most this far
    apart), rate limit (bytes/s; None: the configured default; 0:
    unlimited), what moved, and the mover's last measure: the spread of the
    fractions and the bytes it estimates are still to move.
    """

    state: str
    margin: float
    rate: Optional[int]
    started: datetime.datetime
    updated: datetime.datetime
    finished: Optional[datetime.datetime] = None
    moved_objects: int = 0
    moved_bytes: int = 0
    failed_objects: int = 0
    active_seconds: float = 0.0
    spread: Optional[float] = None
    remaining_bytes: int = 0
    last_error: Optional[str] = None
