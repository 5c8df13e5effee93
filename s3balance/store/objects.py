"""
SQL for objects, their locations, write intents and the deletion queue.

Every function runs inside the caller's transaction; see
L{s3balance.store.interfaces} for the order of effects they guarantee.

Over 500 lines: the write path's transaction functions (intents, capacity,
commit, delete, deletion queue) share their invariants and are read together.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Optional

import attr
from sqlalchemy import (
    BigInteger,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from s3balance.store import parts, quotas, tables, versions
from s3balance.store.buckets import lock_bucket_shared
from s3balance.store.clock import database_time, lease_ms
from s3balance.store.conditions import check_preconditions, same_version
from s3balance.store.deletion_queue import (
    NO_GRACE,
    REASON_ABANDONED,
    REASON_DELETED,
    REASON_LEASE_EXPIRED,
    REASON_REPLACED,
    queue_deletion,
)
from s3balance.store.interfaces import (
    BackendFull,
    ConcurrentInsert,
    Deletion,
    Location,
    NoSuchBucketError,
    ObjectLocked,
    ObjectRecord,
    QueuedDeletion,
    TagSet,
    WriteIntent,
    WriteIntentExpired,
)
from s3balance.store.records import (
    dump_tags,
    encode_key,
    object_record,
    object_values,
    queued_deletion,
)

_o = tables.objects
_loc = tables.object_locations
_wi = tables.write_intents
_dq = tables.deletion_queue



# The statements of the write path, built once (building them cost more than
# running them); values are bound per call.
_LEASE_UNTIL = database_time(bindparam("lease_ms", type_=BigInteger()))
_INSERT_INTENT = insert(_wi).values(lease_until=_LEASE_UNTIL)
_RENEW_INTENT = update(_wi).where(_wi.c.id == bindparam("intent_id")).values(lease_until=_LEASE_UNTIL)
_SELECT_INTENT = select(_wi.c.backend, _wi.c.real_key).where(_wi.c.id == bindparam("id"))
_DELETE_INTENT = delete(_wi).where(_wi.c.id == bindparam("id"))
_DELETE_INTENT_RETURNING = _DELETE_INTENT.returning(_wi.c.backend, _wi.c.real_key)
_INSERT_LOCATION = insert(_loc)
_INSERT_OBJECT = insert(_o)
_INSERT_DELETION = insert(_dq)
_LOCATIONS_OF = (
    select(_loc.c.backend, _loc.c.real_key).where(_loc.c.object_id == bindparam("object_id")).order_by(_loc.c.id)
)
_DELETE_LOCATIONS_OF = delete(_loc).where(_loc.c.object_id == bindparam("object_id"))
_UPDATE_OBJECT = update(_o).where(_o.c.id == bindparam("object_id"))
# In a bucket never versioned a key's one row is its latest version (latest = 1).
_LATEST: ColumnElement[int] = literal_column("1")  # not a bound parameter, as _ZERO
_CURRENT_FOR_UPDATE = (
    select(_o.c.id, _o.c.etag, _o.c.size, _o.c.lock_mode, _o.c.lock_until, _o.c.legal_hold)
    .where(_o.c.bucket == bindparam("bucket"), _o.c.key == bindparam("key", type_=_o.c.key.type), _o.c.latest == _LATEST)
    .with_for_update()
)


def _new_id(result: CursorResult) -> int:
    """The generated primary key of a one-row INSERT."""
    key = result.inserted_primary_key
    assert key is not None and key[0] is not None
    return int(key[0])


# -- write intents -----------------------------------------------------------


def begin_write(
    conn: Connection,
    backend: str,
    real_key: str,
    lease_seconds: float,
    now: datetime.datetime,
    size: int = 0,
    max_size: Optional[int] = None,
    bucket: Optional[str] = None,
    objects: int = 0,
    check_quota: bool = False,
) -> WriteIntent:
    """
    An intent whose lease ends C{lease_seconds} after the database's now
    (L{database_time}).  It reserves C{size} bytes on C{backend} until it is
    taken; with C{max_size}, only when they fit (L{check_capacity}, in this
    transaction: L{BackendFull} otherwise, and nothing is recorded).  It
    reserves C{size} bytes and C{objects} objects in the virtual bucket
    C{bucket} too; with C{check_quota}, only when they fit its quota
    (L{quotas.check_quota}: L{QuotaExceeded} otherwise).  The capacity lock
    is taken before the quota lock, always.
    """
    if max_size is not None:
        check_capacity(conn, backend, size, max_size)
    if check_quota and bucket is not None:
        quotas.check_quota(conn, bucket, size, objects)
    result = conn.execute(
        _INSERT_INTENT,
        {
            "backend": backend,
            "real_key": real_key,
            "lease_ms": lease_ms(lease_seconds),
            "created": now,
            "size": size,
            "bucket": bucket,
            "objects": objects,
        },
    )
    return WriteIntent(id=_new_id(result), backend=backend, real_key=real_key)


def grow_write(
    conn: Connection,
    intent_id: int,
    backend: str,
    size: int,
    max_size: Optional[int] = None,
    bucket: Optional[str] = None,
    check_quota: bool = False,
) -> None:
    """Reserve C{size} more bytes under a running write's intent (checked like L{begin_write}'s)."""
    if max_size is not None:
        check_capacity(conn, backend, size, max_size)
    if check_quota and bucket is not None:
        quotas.check_quota(conn, bucket, size, 0)
    if conn.execute(_GROW_INTENT, {"intent_id": intent_id, "delta": size}).rowcount != 1:
        raise WriteIntentExpired(intent_id)


# -- capacity ------------------------------------------------------------------
#
# What a backend holds, as far as the store knows: the used bytes of the
# usage counters (the backend_usage table of store/usage.py), the bytes
# reserved by every daemon's writes in flight (their intents' size) and by
# the parts of open multipart uploads (their row's reserved).  A reservation
# is taken only while the sum stays within max_size, under a lock on the
# backend's capacity_locks row, so two daemons can't both take the last room
# (SQLite serializes writers anyway: BEGIN IMMEDIATE).  At READ COMMITTED
# every statement reads the latest commits, so the sums read after the lock
# see every reservation taken before it.

_cl = tables.capacity_locks
_usage = tables.backend_usage
_mp = tables.multipart_uploads
_LOCK_CAPACITY = select(_cl.c.backend).where(_cl.c.backend == bindparam("backend")).with_for_update()
_INSERT_CAPACITY_LOCK = insert(_cl)
_ZERO: ColumnElement[int] = literal_column("0")  # not a bound parameter: the raw paths bind only the caller's
_HELD = select(
    select(func.coalesce(func.sum(_usage.c.used_bytes), _ZERO))
    .where(_usage.c.backend == bindparam("backend"))
    .scalar_subquery()
    .label("used"),
    select(func.coalesce(func.sum(_wi.c.size), _ZERO))
    .where(_wi.c.backend == bindparam("backend"))
    .scalar_subquery()
    .label("writes"),
    select(func.coalesce(func.sum(_mp.c.reserved), _ZERO))
    .where(_mp.c.backend == bindparam("backend"))
    .scalar_subquery()
    .label("parts"),
)
_GROW_INTENT = (
    update(_wi)
    .where(_wi.c.id == bindparam("intent_id"))
    .values(size=_wi.c.size + bindparam("delta", type_=BigInteger()))
)


def check_capacity(conn: Connection, backend: str, size: int, max_size: int) -> None:
    """
    Raise L{BackendFull} unless C{size} more bytes fit on C{backend}.  The
    caller's transaction records them (an intent's size) before it commits,
    which releases the lock.
    """
    if conn.dialect.name != "sqlite":
        if conn.execute(_LOCK_CAPACITY, {"backend": backend}).first() is None:
            # The backend's first checked write.  Two daemons inserting at
            # once: the second waits for the first's commit, fails on the
            # key, and its transaction runs again, locking the row this time.
            try:
                conn.execute(_INSERT_CAPACITY_LOCK, {"backend": backend})
            except IntegrityError as e:
                raise ConcurrentInsert(backend) from e
    held = conn.execute(_HELD, {"backend": backend}).first()
    assert held is not None  # (one row of sums, always)
    used, reserved = int(held.used), int(held.writes) + int(held.parts)
    if used + reserved + size > max_size:
        raise BackendFull(backend, used, reserved, size, max_size)


def renew_write(conn: Connection, intent_id: int, lease_seconds: float) -> None:
    """Extend the lease to C{lease_seconds} after the database's now; L{WriteIntentExpired} when it is gone."""
    result = conn.execute(_RENEW_INTENT, {"intent_id": intent_id, "lease_ms": lease_ms(lease_seconds)})
    if result.rowcount != 1:
        raise WriteIntentExpired(intent_id)


def take_intent(
    conn: Connection, intent_id: int, *conditions: ColumnElement[bool]
) -> Optional[tuple[str, str]]:
    """
    Delete the intent row and say what it was, or None when it is gone.

    Deleting first (rather than reading first) makes the row lock decide races
    between commit, abandon and the lease-expiry sweep: exactly one of them
    sees rowcount 1.
    """
    if not conditions and conn.dialect.delete_returning:
        # One statement where the database can (SQLite >= 3.35, PostgreSQL, MariaDB >= 10.5).
        taken = conn.execute(_DELETE_INTENT_RETURNING, {"id": intent_id}).first()
        return (taken.backend, taken.real_key) if taken is not None else None
    row = conn.execute(_SELECT_INTENT, {"id": intent_id}).first()
    if row is None:
        return None
    if conditions:
        result = conn.execute(delete(_wi).where(_wi.c.id == intent_id, *conditions))
    else:
        result = conn.execute(_DELETE_INTENT, {"id": intent_id})
    if result.rowcount != 1:
        return None
    return row.backend, row.real_key


def abandon_write(
    conn: Connection, intent_id: int, backend_object_may_exist: bool, now: datetime.datetime
) -> None:
    taken = take_intent(conn, intent_id)
    if taken is not None and backend_object_may_exist:
        queue_deletion(conn, taken[0], taken[1], REASON_ABANDONED, now)


def expired_writes(conn: Connection, now: datetime.datetime, limit: int) -> int:
    """
    Move up to C{limit} intents whose lease ran out by the database's clock
    (never the daemon's: C{now} only stamps the queued deletions) to the
    deletion queue.  -> how many.
    """
    expired = _wi.c.lease_until <= database_time()
    candidates = (
        conn.execute(
            select(_wi.c.id)
            .where(expired)
            .order_by(_wi.c.lease_until, _wi.c.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    moved = 0
    for intent_id in candidates:
        # The lease is checked again under the row lock: a renewal or a commit
        # that won the race keeps its intent.
        taken = take_intent(conn, intent_id, expired)
        if taken is not None:
            queue_deletion(conn, taken[0], taken[1], REASON_LEASE_EXPIRED, now)
            moved += 1
    return moved


# -- objects -----------------------------------------------------------------


def _locations_of(conn: Connection, object_id: int) -> tuple[Location, ...]:
    rows = conn.execute(_LOCATIONS_OF, {"object_id": object_id})
    return tuple(Location(backend=r.backend, real_key=r.real_key) for r in rows)


def replace_object(
    conn: Connection,
    record: ObjectRecord,
    if_match: Optional[str],
    if_none_match: Optional[str],
    now: datetime.datetime,
    grace: datetime.timedelta = NO_GRACE,
) -> ObjectRecord:
    """
    Insert or replace the (bucket, key) row with record and its locations;
    the replaced version's locations go to the deletion queue.

    The current row is locked (SELECT ... FOR UPDATE) so concurrent writers of
    one key take turns; when there is no row yet, two writers may both insert
    and the unique constraint turns the loser's insert into ConcurrentInsert,
    which makes the runner retry the transaction and take the replace path.

    The bucket's usage grows by the difference (the new size, and an object
    when there was none), last, so its row is held for as short as can be.
    """
    versioning = lock_bucket_shared(conn, record.bucket)
    if versioning is not None:
        return versions.put_version(conn, record, versioning, if_match, if_none_match, now, grace)
    key = encode_key(record.key)
    current = conn.execute(_CURRENT_FOR_UPDATE, {"bucket": record.bucket, "key": key}).first()
    check_preconditions(current.etag if current is not None else None, if_match, if_none_match)
    values = object_values(record)
    new_locations = set(record.locations)
    if current is None:
        try:
            object_id = _new_id(conn.execute(_INSERT_OBJECT, values))
        except IntegrityError as e:
            raise ConcurrentInsert(record.bucket, record.key) from e
        added = (record.size, 1)
    else:
        versions.check_unlocked(current, now)
        object_id = current.id
        added = (record.size - int(current.size), 0)
        for old in _locations_of(conn, object_id):
            # A new version written under the same real key must not be deleted.
            if old not in new_locations:
                queue_deletion(conn, old.backend, old.real_key, REASON_REPLACED, now, grace=grace)
        conn.execute(_DELETE_LOCATIONS_OF, {"object_id": object_id})
        conn.execute(_UPDATE_OBJECT, {"object_id": object_id, **values})
    rows = [
        {"object_id": object_id, "backend": loc.backend, "real_key": loc.real_key, "created": now}
        for loc in record.locations
    ]
    if rows:
        # One row (the usual case) as a plain execute: executemany is the slower path.
        conn.execute(_INSERT_LOCATION, rows[0] if len(rows) == 1 else rows)
    quotas.add_usage(conn, record.bucket, quotas.shard_of(key), *added)
    return attr.evolve(record, id=object_id, last_modified=values["last_modified"], tags=tuple(sorted(record.tags)))


def commit_object(
    conn: Connection,
    intent_id: int,
    record: ObjectRecord,
    if_match: Optional[str],
    if_none_match: Optional[str],
    now: datetime.datetime,
    grace: datetime.timedelta = NO_GRACE,
    also: Sequence[int] = (),
) -> ObjectRecord:
    """
    Take the write's intent (and those of its other copies, C{also}: one
    per replica written at once) and replace the object with C{record}.
    """
    for taken in (intent_id, *also):
        if take_intent(conn, taken) is None:
            raise WriteIntentExpired(taken)
    return replace_object(conn, record, if_match, if_none_match, now, grace)


# Built once: constructing the statement cost more than running it on the hot path.
_GET_OBJECT = (
    select(_o, _loc.c.backend.label("location_backend"), _loc.c.real_key.label("location_key"))
    .select_from(_o.outerjoin(_loc, _loc.c.object_id == _o.c.id))
    .where(_o.c.bucket == bindparam("bucket"), _o.c.key == bindparam("key", type_=_o.c.key.type), _o.c.latest == _LATEST)
    .order_by(_loc.c.id)
)


def get_object(conn: Connection, bucket: str, key: str) -> Optional[ObjectRecord]:
    # One statement, so the row and its locations come from one snapshot even
    # at READ COMMITTED: an overwrite committing in between can't pair the old
    # row (size, ETag) with the new version's location.
    rows = conn.execute(_GET_OBJECT, {"bucket": bucket, "key": encode_key(key)}).all()
    if not rows:
        return None
    locations = tuple(
        Location(backend=r.location_backend, real_key=r.location_key) for r in rows if r.location_backend is not None
    )
    return object_record(rows[0], locations)


def set_object_tags(conn: Connection, bucket: str, key: str, tags: TagSet) -> bool:
    """
    Replace the current version's tags (PutObjectTagging, DeleteObjectTagging):
    one UPDATE of the tags column, so its ETag, Last-Modified, locations and
    usage stay as they are.  -> whether the object exists.
    """
    result = conn.execute(
        update(_o).where(_o.c.bucket == bucket, _o.c.key == encode_key(key), _o.c.latest == _LATEST)
        .values(tags=dump_tags(tags))
    )
    return result.rowcount == 1


def set_object_acl(conn: Connection, bucket: str, key: str, acl: Optional[str]) -> bool:
    """
    Replace the current version's ACL (PutObjectAcl; s3.acl.dump's text):
    one UPDATE of the acl column, as L{set_object_tags}.  -> whether the
    object exists.
    """
    result = conn.execute(
        update(_o).where(_o.c.bucket == bucket, _o.c.key == encode_key(key), _o.c.latest == _LATEST).values(acl=acl)
    )
    return result.rowcount == 1


def delete_object(
    conn: Connection,
    bucket: str,
    key: str,
    now: datetime.datetime,
    grace: datetime.timedelta = NO_GRACE,
    expected: Optional[ObjectRecord] = None,
    version_id: Optional[str] = None,
    bypass_governance: bool = False,
) -> Deletion:
    """
    DeleteObject.  With C{version_id}: remove that version
    (L{versions.delete_version}).  Without, in a versioned bucket: add a
    delete marker (L{versions.add_delete_marker}); in a bucket never
    versioned: remove the (bucket, key) row, queue its locations for
    deletion, take it off the bucket's usage.  With C{expected} (the
    lifecycle expirer's), only while the latest version is still that one
    with those tags (L{conditions.same_version}).  A version protected by
    Object Lock stays (L{versions.check_unlocked}: ObjectLocked).
    """
    if version_id is not None:
        return versions.delete_version(conn, bucket, key, version_id, now, grace, bypass_governance)
    versioning = _versioning(conn, bucket)
    if versioning is not None:
        return versions.add_delete_marker(conn, bucket, key, versioning, now, grace, expected)
    removed = _remove_object(conn, bucket, key, now, grace, expected)
    if removed is not None:
        quotas.add_usage(conn, bucket, quotas.shard_of(encode_key(key)), -removed.size, -1)
    return Deletion(removed=removed)


def _versioning(conn: Connection, bucket: str) -> Optional[str]:
    """The bucket's versioning status, its row share-locked (None: never versioned, or no such bucket)."""
    try:
        return lock_bucket_shared(conn, bucket)
    except NoSuchBucketError:
        return None


def _remove_object(
    conn: Connection,
    bucket: str,
    key: str,
    now: datetime.datetime,
    grace: datetime.timedelta,
    expected: Optional[ObjectRecord] = None,
) -> Optional[ObjectRecord]:
    row = conn.execute(
        select(_o).where(_o.c.bucket == bucket, _o.c.key == encode_key(key), _o.c.latest == _LATEST).with_for_update()
    ).first()
    if row is None:
        return None
    if expected is not None and not same_version(row, expected):
        return None
    versions.check_unlocked(row, now)
    locations = _locations_of(conn, row.id)
    for loc in locations:
        queue_deletion(conn, loc.backend, loc.real_key, REASON_DELETED, now, grace=grace)
    conn.execute(delete(_loc).where(_loc.c.object_id == row.id))
    conn.execute(delete(_o).where(_o.c.id == row.id))
    return object_record(row, locations)


# -- deletion queue ----------------------------------------------------------


def queued_deletions(conn: Connection, now: datetime.datetime, limit: int) -> list[QueuedDeletion]:
    rows = conn.execute(select(_dq).where(_dq.c.due <= now).order_by(_dq.c.due, _dq.c.id).limit(limit))
    return [queued_deletion(row) for row in rows]


# One statement for the three tables (it runs for every queued deletion).
_IS_REFERENCED = select(
    or_(
        *(
            exists().where(table.c.real_key == bindparam("real_key"), table.c.backend == bindparam("backend"))
            for table in (_loc, _wi, tables.multipart_uploads)
        )
    )
)


def is_referenced(conn: Connection, backend: str, real_key: str) -> bool:
    """
    Whether a live record refers to the backend object C{real_key} on
    C{backend}: an object's location, a write intent (an upload in flight)
    or a multipart upload in progress.

    Real keys are fresh for every write, so a queued deletion's key is
    normally referred to by nothing.  One case makes it live again: a
    write intent whose COMMIT failed on a lost connection may have been
    committed after all, and the transaction's retry took a second intent
    for the same real key, whose upload then committed.  The first intent
    expires later and queues its key for deletion, which would delete the
    bytes of a stored object.  The deletion worker asks here first.
    """
    return bool(conn.execute(_IS_REFERENCED, {"backend": backend, "real_key": real_key}).scalar())


def finish_deletion(conn: Connection, deletion_id: int) -> None:
    parts.forget_object_parts(conn, deletion_id)
    conn.execute(delete(_dq).where(_dq.c.id == deletion_id))


def retry_deletion_later(conn: Connection, deletion_id: int, due: datetime.datetime) -> None:
    conn.execute(update(_dq).where(_dq.c.id == deletion_id).values(attempts=_dq.c.attempts + 1, due=due))


def postpone_deletions(conn: Connection, backend: str, now: datetime.datetime, due: datetime.datetime) -> int:
    """
    Push the due deletions of C{backend} (down: the deletion worker skips
    it) to C{due}, attempts unchanged, so they don't hold up the rest of
    the queue.  -> how many.
    """
    return conn.execute(
        update(_dq).where(_dq.c.backend == backend, _dq.c.due <= now).values(due=due)
    ).rowcount


def delete_objects(
    conn: Connection,
    bucket: str,
    items: Sequence[tuple[str, Optional[str]]],
    now: datetime.datetime,
    grace: datetime.timedelta = NO_GRACE,
    bypass_governance: bool = False,
) -> dict[tuple[str, Optional[str]], Deletion]:
    """
    L{delete_object} for each (key, version id or None) of C{items}, in one
    transaction (DeleteObjects: one commit for up to 1000 keys).  Rows are
    locked in key order, so two such transactions on overlapping keys wait
    for each other instead of deadlocking; in a bucket never versioned the
    bucket's usage rows are updated once each, last, in their order too.
    -> what was done for each distinct item.
    """
    ordered = sorted(set(items), key=lambda item: (encode_key(item[0]), item[1] or ""))
    versioning = _versioning(conn, bucket)
    if versioning is not None or any(version is not None for _, version in ordered):
        # Each change of a key's versions locks the key's usage row first
        # (store/versions.py): all of them here, up front and in shard
        # order, so that two such transactions never deadlock.
        for shard in sorted({quotas.shard_of(encode_key(key)) for key, _ in ordered}):
            quotas.lock_shard(conn, bucket, shard)
        done: dict[tuple[str, Optional[str]], Deletion] = {}
        for key, version in ordered:
            try:
                done[(key, version)] = delete_object(
                    conn, bucket, key, now, grace, version_id=version, bypass_governance=bypass_governance
                )
            except ObjectLocked:
                # Refused before anything of it changed: the others go on.
                done[(key, version)] = Deletion(locked=True)
        return done
    done = {}
    deltas: dict[int, tuple[int, int]] = {}
    for key, version in ordered:
        record = _remove_object(conn, bucket, key, now, grace)
        done[(key, version)] = Deletion(removed=record)
        if record is not None:
            shard = quotas.shard_of(encode_key(key))
            size, count = deltas.get(shard, (0, 0))
            deltas[shard] = (size - record.size, count - 1)
    quotas.add_usage_of_keys(conn, bucket, deltas)
    return done
