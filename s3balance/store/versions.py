"""
SQL for object versions (S3 versioning).

Every version of a key is a row of C{objects} with its locations, so every
path that keeps or moves bytes (the deletion worker's L{is_referenced}
guard, drain, rebalance, replicas, fsck, usage) sees noncurrent versions as
it sees current ones, with no change.  The columns (migration 0018):

  - C{version_id}: the version's id, NULL for the "null" version (written
    while the bucket was never versioned or is suspended);
  - C{latest}: 1 on the key's newest version when it is not a delete
    marker, NULL on every other row: the unique (bucket, key, latest) index
    holds one such row per key, and the listings read only those
    (L{s3balance.store.listing_sql});
  - C{delete_marker}: 1 on a delete marker (no bytes, no locations).

The versions of a key are ordered by row id, which the database assigns:
the newest has the greatest, also when several daemons write one key at
once.  Every change of a key's versions in a versioned bucket first locks
the key's usage row (L{quotas.lock_shard}: one of a few per bucket, chosen by
a hash of the key), so such changes of one key take turns and each sees the
rows the previous one committed; the unversioned path is unchanged.
Removing a version that was the newest makes the next one the latest.

Version ids are random (opaque to clients, as S3's): 32 characters of the
URL-safe base64 alphabet, never "null".
"""

from __future__ import annotations

import datetime
import re
import secrets
from typing import Any, Optional

import attr
from sqlalchemy import bindparam, delete, insert, literal_column, null, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from s3balance.store import quotas, tables
from s3balance.store.conditions import check_preconditions, same_version
from s3balance.store.deletion_queue import REASON_DELETED, queue_deletion
from s3balance.store.interfaces import (
    ConcurrentInsert,
    Deletion,
    Location,
    ObjectLocked,
    ObjectRecord,
    TagSet,
)
from s3balance.store.records import dump_tags, encode_key, object_record, object_values

ENABLED = "Enabled"
SUSPENDED = "Suspended"
NULL_VERSION = "null"
GOVERNANCE = "GOVERNANCE"
COMPLIANCE = "COMPLIANCE"

_o = tables.objects
_loc = tables.object_locations

# Literals, not bound parameters: the raw paths (rawread.py) bind only the caller's.
_ONE: ColumnElement[int] = literal_column("1")

# What a version id may look like: ours (32 URL-safe base64 characters) and
# S3's (its alphabet, with ".", "+", "/" and "=") of a client that moved
# here, which name no version here (NoSuchVersion) but are no malformed request.
_VERSION_ID = re.compile(r"[A-Za-z0-9._+/=-]{1,1024}")


def new_version_id() -> str:
    return secrets.token_urlsafe(24)


def is_version_id(text: str) -> bool:
    """Whether C{text} could name a version ("null", or an id); anything else is S3's InvalidArgument."""
    return text == NULL_VERSION or _VERSION_ID.fullmatch(text) is not None


def check_unlocked(row: Any, now: datetime.datetime, bypass_governance: bool = False) -> None:
    """
    The one guard on removing or replacing a version's bytes: ObjectLocked
    while its legal hold is on or its retention runs (GOVERNANCE retention
    gives way to C{bypass_governance}; COMPLIANCE to nothing).  Every path
    that drops a version's row calls it first, before changing anything.
    """
    if row.legal_hold:
        raise ObjectLocked("legal hold")
    if row.lock_mode is not None and row.lock_until is not None and row.lock_until > now:
        if row.lock_mode == COMPLIANCE or not bypass_governance:
            raise ObjectLocked(row.lock_mode)


def _of_key(bucket: str, key: bytes) -> ColumnElement[bool]:
    return (_o.c.bucket == bucket) & (_o.c.key == key)


def _version_is(version_id: Optional[str]) -> ColumnElement[bool]:
    """The condition for a version id as a client names it ("null": the NULL one)."""
    if version_id is None or version_id == NULL_VERSION:
        return _o.c.version_id.is_(None)
    return _o.c.version_id == version_id


_KEY = bindparam("key", type_=_o.c.key.type)
_LATEST_FOR_UPDATE = (
    select(_o.c.id, _o.c.etag, _o.c.size)
    .where(_o.c.bucket == bindparam("bucket"), _o.c.key == _KEY, _o.c.latest == _ONE)
    .with_for_update()
)
# (Prebuilt, with named parameters: put_version runs on the raw paths too.)
_NULL_FOR_UPDATE = (
    select(_o).where(_o.c.bucket == bindparam("bucket"), _o.c.key == _KEY, _o.c.version_id.is_(None)).with_for_update()
)
_NEWEST = (
    select(_o.c.id, _o.c.delete_marker, _o.c.latest)
    .where(_o.c.bucket == bindparam("bucket"), _o.c.key == _KEY)
    .order_by(_o.c.id.desc())
    .limit(1)
)
_DEMOTE = update(_o).where(_o.c.id == bindparam("object_id")).values(latest=null())
_PROMOTE = update(_o).where(_o.c.id == bindparam("object_id")).values(latest=_ONE)
_LOCATIONS_OF = (
    select(_loc.c.backend, _loc.c.real_key).where(_loc.c.object_id == bindparam("object_id")).order_by(_loc.c.id)
)
_DELETE_LOCATIONS_OF = delete(_loc).where(_loc.c.object_id == bindparam("object_id"))
_DELETE_ROW = delete(_o).where(_o.c.id == bindparam("object_id"))
_INSERT_OBJECT = insert(_o)
_INSERT_LOCATION = insert(_loc)


def _insert(conn: Connection, values: dict[str, Any]) -> int:
    try:
        result = conn.execute(_INSERT_OBJECT, values)
    except IntegrityError as e:
        # Another latest row of the key landed meanwhile: run again, after it.
        raise ConcurrentInsert(values["bucket"], values["key"]) from e
    key = result.inserted_primary_key
    assert key is not None and key[0] is not None
    return int(key[0])


def _drop_row(
    conn: Connection, object_id: int, now: datetime.datetime, grace: datetime.timedelta, keep: frozenset[Location]
) -> tuple[Location, ...]:
    """Remove a version's row and queue its locations for deletion (but those in C{keep}). -> its locations."""
    rows = conn.execute(_LOCATIONS_OF, {"object_id": object_id})
    locations = tuple(Location(backend=r.backend, real_key=r.real_key) for r in rows)
    for location in locations:
        if location not in keep:
            queue_deletion(conn, location.backend, location.real_key, REASON_DELETED, now, grace=grace)
    conn.execute(_DELETE_LOCATIONS_OF, {"object_id": object_id})
    conn.execute(_DELETE_ROW, {"object_id": object_id})
    return locations


def make_newest_latest(conn: Connection, bucket: str, key: bytes) -> None:
    """After a version went: the key's newest version, unless a delete marker, is the latest."""
    newest = conn.execute(_NEWEST, {"bucket": bucket, "key": key}).first()
    if newest is not None and not newest.delete_marker and newest.latest is None:
        conn.execute(_PROMOTE, {"object_id": newest.id})


def _make_way(
    conn: Connection,
    bucket: str,
    key: bytes,
    versioning: str,
    current: Optional[Row],
    now: datetime.datetime,
    grace: datetime.timedelta,
    keep: frozenset[Location] = frozenset(),
) -> tuple[Optional[str], Optional[ObjectRecord]]:
    """
    Make way for a new newest version of the key (a write's or a delete
    marker): its id, a new one when Enabled; when Suspended, None (the null
    version), which replaces the previous null version (its row goes, and
    its bytes but those in C{keep}, if Object Lock lets them).  The latest
    version C{current} becomes noncurrent.  -> (the new version's id, the
    null version removed or None).
    """
    version_id = new_version_id() if versioning == ENABLED else None
    removed: Optional[ObjectRecord] = None
    if version_id is None:
        row = conn.execute(_NULL_FOR_UPDATE, {"bucket": bucket, "key": key}).first()
        if row is not None:
            check_unlocked(row, now)
            removed = object_record(row, _drop_row(conn, row.id, now, grace, keep))
    if current is not None and (removed is None or current.id != removed.id):
        conn.execute(_DEMOTE, {"object_id": current.id})
    return version_id, removed


def put_version(
    conn: Connection,
    record: ObjectRecord,
    versioning: str,
    if_match: Optional[str],
    if_none_match: Optional[str],
    now: datetime.datetime,
    grace: datetime.timedelta,
) -> ObjectRecord:
    """
    Add C{record} as its key's newest version, in a versioned bucket (its
    status C{versioning}, read under the bucket's lock): a new version id
    when Enabled; when Suspended, the null version, replacing the previous
    null version (its bytes go) and keeping the others.  The previous latest
    version stays, noncurrent, with its bytes.
    """
    key = encode_key(record.key)
    shard = quotas.shard_of(key)
    quotas.lock_shard(conn, record.bucket, shard)
    current = conn.execute(_LATEST_FOR_UPDATE, {"bucket": record.bucket, "key": key}).first()
    check_preconditions(current.etag if current is not None else None, if_match, if_none_match)
    version_id, removed = _make_way(
        conn, record.bucket, key, versioning, current, now, grace, frozenset(record.locations)
    )
    added_bytes, added_objects = record.size, 1
    if removed is not None:
        added_bytes, added_objects = added_bytes - removed.size, 0
    values = object_values(record)
    values.update(version_id=version_id, latest=1, delete_marker=0)
    object_id = _insert(conn, values)
    rows = [
        {"object_id": object_id, "backend": loc.backend, "real_key": loc.real_key, "created": now}
        for loc in record.locations
    ]
    if rows:
        conn.execute(_INSERT_LOCATION, rows[0] if len(rows) == 1 else rows)
    quotas.add_usage(conn, record.bucket, shard, added_bytes, added_objects)
    return attr.evolve(
        record, id=object_id, last_modified=values["last_modified"], tags=tuple(sorted(record.tags)),
        version_id=version_id,
    )


def add_delete_marker(
    conn: Connection,
    bucket: str,
    key_text: str,
    versioning: str,
    now: datetime.datetime,
    grace: datetime.timedelta,
    expected: Optional[ObjectRecord] = None,
) -> Deletion:
    """
    DeleteObject without a version id in a versioned bucket: a delete
    marker becomes the key's newest version (a null one when Suspended,
    replacing the previous null version), also when the key has no version
    (as on S3).  With C{expected} (the lifecycle expirer's), only while the
    latest version is still that one.
    """
    key = encode_key(key_text)
    shard = quotas.shard_of(key)
    quotas.lock_shard(conn, bucket, shard)
    current = conn.execute(
        select(_o).where(_of_key(bucket, key), _o.c.latest == _ONE).with_for_update()
    ).first()
    if expected is not None and (current is None or not same_version(current, expected)):
        return Deletion()
    version_id, removed = _make_way(conn, bucket, key, versioning, current, now, grace)
    added_bytes, added_objects = (-removed.size, 0) if removed is not None else (0, 1)
    moment = now.astimezone(datetime.UTC).replace(microsecond=0)
    values = {
        "bucket": bucket, "key": key, "size": 0, "etag": "", "last_modified": moment, "content_type": None,
        "headers": "{}", "checksums": "{}", "tags": None, "acl": None,
        "version_id": version_id, "latest": None, "delete_marker": 1,
    }
    object_id = _insert(conn, values)
    quotas.add_usage(conn, bucket, shard, added_bytes, added_objects)
    marker = ObjectRecord(
        bucket=bucket, key=key_text, size=0, etag="", last_modified=moment, content_type=None, headers={},
        checksums={}, locations=(), id=object_id, version_id=version_id, delete_marker=True,
    )
    return Deletion(removed=removed, marker=marker)


def delete_version(
    conn: Connection,
    bucket: str,
    key_text: str,
    version_id: str,
    now: datetime.datetime,
    grace: datetime.timedelta,
    bypass_governance: bool = False,
) -> Deletion:
    """
    DeleteObject with a version id: remove that version for good (its
    bytes go; a delete marker just goes), unless Object Lock protects it
    (L{check_unlocked}: ObjectLocked).  When it was the key's newest, the
    next one becomes the latest.  Any bucket: in one never versioned, "null"
    names its objects.
    """
    key = encode_key(key_text)
    shard = quotas.shard_of(key)
    quotas.lock_shard(conn, bucket, shard)
    row = conn.execute(select(_o).where(_of_key(bucket, key), _version_is(version_id)).with_for_update()).first()
    if row is None:
        return Deletion()
    check_unlocked(row, now, bypass_governance)
    locations = _drop_row(conn, row.id, now, grace, frozenset())
    make_newest_latest(conn, bucket, key)
    quotas.add_usage(conn, bucket, shard, -int(row.size), -1)
    return Deletion(removed=object_record(row, locations))


def get_version(conn: Connection, bucket: str, key: str, version_id: Optional[str]) -> Optional[ObjectRecord]:
    """
    A version of the key with its locations, delete markers included:
    C{version_id} None is the newest version (a delete marker, maybe), "null"
    the null version.
    """
    condition = _of_key(bucket, encode_key(key))
    query = select(_o).where(condition)
    if version_id is None:
        query = query.order_by(_o.c.id.desc()).limit(1)
    else:
        query = query.where(_version_is(version_id))
    row = conn.execute(query).first()
    if row is None:
        return None
    return _with_locations(conn, row)


def _with_locations(conn: Connection, row: Row) -> ObjectRecord:
    """The version's record with its locations, as they are in this transaction."""
    rows = conn.execute(_LOCATIONS_OF, {"object_id": row.id})
    return object_record(row, tuple(Location(backend=r.backend, real_key=r.real_key) for r in rows))


def set_version_tags(conn: Connection, bucket: str, key: str, version_id: str, tags: TagSet) -> Optional[bool]:
    """
    Replace one version's tags. -> True, False (a delete marker: S3's
    MethodNotAllowed) or None (no such version).
    """
    return _set_version(conn, bucket, key, version_id, tags=dump_tags(tags))


def set_version_acl(conn: Connection, bucket: str, key: str, version_id: str, acl: Optional[str]) -> Optional[bool]:
    """Replace one version's ACL, as L{set_version_tags}."""
    return _set_version(conn, bucket, key, version_id, acl=acl)


def _set_version(conn: Connection, bucket: str, key: str, version_id: str, **values: Any) -> Optional[bool]:
    condition = _of_key(bucket, encode_key(key)) & _version_is(version_id)
    row = conn.execute(select(_o.c.id, _o.c.delete_marker).where(condition).with_for_update()).first()
    if row is None:
        return None
    if row.delete_marker:
        return False
    conn.execute(update(_o).where(_o.c.id == row.id).values(**values))
    return True


def set_versioning(conn: Connection, bucket: str, status: str) -> bool:
    """
    PutBucketVersioning: Enabled or Suspended (never back to unversioned).
    The bucket's row is locked: writes under way (which hold it shared)
    finish under the old status, later ones see the new. -> whether the bucket exists.
    """
    _b = tables.buckets
    found = conn.execute(select(_b.c.object_lock).where(_b.c.name == bucket).with_for_update()).first()
    if found is None:
        return False
    if found.object_lock is not None and status != ENABLED:
        # Object Lock needs every write to make a version of its own.
        raise ObjectLocked("versioning of a bucket with Object Lock")
    conn.execute(update(_b).where(_b.c.name == bucket).values(versioning=status))
    return True


# -- Object Lock ---------------------------------------------------------------


def _version_for_update(conn: Connection, bucket: str, key: str, version_id: Optional[str]) -> Optional[Row]:
    """The version named (None: the key's newest), locked."""
    query = select(_o).where(_of_key(bucket, encode_key(key)))
    if version_id is None:
        query = query.order_by(_o.c.id.desc()).limit(1)
    else:
        query = query.where(_version_is(version_id))
    return conn.execute(query.with_for_update()).first()


def weakens(
    mode: Optional[str],
    until: Optional[datetime.datetime],
    new_mode: Optional[str],
    new_until: Optional[datetime.datetime],
) -> bool:
    """
    Whether the retention (C{new_mode}, C{new_until}) is weaker than
    (C{mode}, C{until}): it removes it, shortens it or changes its mode.
    Nothing weakens no retention.  (Whether the old one still runs is the
    caller's to ask.)
    """
    if mode is None or until is None:
        return False
    return new_mode is None or new_until is None or new_until < until or new_mode != mode


def set_retention(
    conn: Connection,
    bucket: str,
    key: str,
    version_id: Optional[str],
    mode: Optional[str],
    until: Optional[datetime.datetime],
    now: datetime.datetime,
    bypass_governance: bool = False,
) -> Optional[ObjectRecord]:
    """
    PutObjectRetention: set (C{mode} None: remove) a version's retention.
    A running retention may be lengthened, never weakened (shortened or
    removed) nor changed to the other mode: ObjectLocked, unless it is
    GOVERNANCE and C{bypass_governance} (as S3, which turns GOVERNANCE into
    COMPLIANCE only with the bypass).  -> the version as it was, with its
    locations as they are now (read under the row's lock: a copy recorded
    after this change finds the new retention, L{s3balance.ops.move}), or
    None (no such version; a delete marker: its record, unchanged).
    """
    row = _version_for_update(conn, bucket, key, version_id)
    if row is None or row.delete_marker:
        return object_record(row) if row is not None else None
    running = row.lock_until is not None and row.lock_until > now
    if running and weakens(row.lock_mode, row.lock_until, mode, until):
        if row.lock_mode == COMPLIANCE or not bypass_governance:
            raise ObjectLocked(row.lock_mode)
    conn.execute(update(_o).where(_o.c.id == row.id).values(lock_mode=mode, lock_until=until))
    return _with_locations(conn, row)


def set_legal_hold(
    conn: Connection, bucket: str, key: str, version_id: Optional[str], on: bool
) -> Optional[ObjectRecord]:
    """PutObjectLegalHold: a version's legal hold on or off. -> the version as it was, or None (as L{set_retention})."""
    row = _version_for_update(conn, bucket, key, version_id)
    if row is None or row.delete_marker:
        return object_record(row) if row is not None else None
    conn.execute(update(_o).where(_o.c.id == row.id).values(legal_hold=1 if on else 0))
    return _with_locations(conn, row)


def set_object_lock(conn: Connection, bucket: str, text: str) -> Optional[str]:
    """
    PutObjectLockConfiguration: the bucket's configuration (s3.object_lock's
    text), on a bucket whose versioning is Enabled.  -> None when set, or
    why not: "NoSuchBucket", "InvalidBucketState" (versioning not Enabled).
    """
    _b = tables.buckets
    row = conn.execute(select(_b.c.versioning).where(_b.c.name == bucket).with_for_update()).first()
    if row is None:
        return "NoSuchBucket"
    if row.versioning != ENABLED:
        return "InvalidBucketState"
    conn.execute(update(_b).where(_b.c.name == bucket).values(object_lock=text))
    return None
