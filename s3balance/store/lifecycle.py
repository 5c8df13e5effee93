"""
SQL for bucket lifecycle configurations (the C{bucket_lifecycles} table),
the pages of objects and versions the lifecycle expirer reads, and its
removal of a version only while it is as read.

The store keeps a configuration as text (L{s3balance.s3.lifecycle_rules.dump}):
it neither reads nor checks it.
"""

from __future__ import annotations

import datetime
from typing import Optional

from sqlalchemy import exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from s3balance.store import objects, quotas, tables
from s3balance.store.buckets import set_bucket_document
from s3balance.store.conditions import same_version
from s3balance.store.interfaces import Deletion, LifecycleVersion, ObjectRecord
from s3balance.store.listing import successor
from s3balance.store.records import encode_key, object_record
from s3balance.store.versions import NULL_VERSION

_b = tables.buckets
_lc = tables.bucket_lifecycles
_o = tables.objects
# The other versions of a row's key, in the correlated subqueries.
_n = tables.objects.alias("other")


def set_bucket_lifecycle(conn: Connection, name: str, text: Optional[str]) -> bool:
    """Replace the bucket's configuration (None: remove it). -> whether the bucket exists."""
    return set_bucket_document(conn, _lc, "configuration", name, text)


def get_bucket_lifecycle(conn: Connection, name: str) -> Optional[str]:
    return conn.execute(select(_lc.c.configuration).where(_lc.c.bucket == name)).scalar()


def lifecycle_buckets(conn: Connection) -> list[tuple[str, str]]:
    """(name, configuration) of every bucket with one, by name."""
    rows = conn.execute(select(_lc.c.bucket, _lc.c.configuration).order_by(_lc.c.bucket))
    return [(row.bucket, row.configuration) for row in rows]


def lifecycle_page(conn: Connection, bucket: str, prefix: str, after: str, limit: int) -> list[ObjectRecord]:
    """
    Up to C{limit} objects of C{bucket} whose key starts with C{prefix} and
    sorts after C{after}, in key order, with their tags (no locations): one
    range scan of the (bucket, key) index.
    """
    prefix_b, after_b = encode_key(prefix), encode_key(after)
    # The latest versions (noncurrent ones are not Expiration's).
    query = select(_o).where(_o.c.bucket == bucket, _o.c.latest == 1)
    if after_b >= prefix_b:
        query = query.where(_o.c.key > after_b)
    else:
        query = query.where(_o.c.key >= prefix_b)
    upper = successor(prefix_b)
    if upper is not None:
        query = query.where(_o.c.key < upper)
    rows = conn.execute(query.order_by(_o.c.key).limit(limit))
    return [object_record(row) for row in rows]


def _same_key() -> ColumnElement[bool]:
    return (_n.c.bucket == _o.c.bucket) & (_n.c.key == _o.c.key)


# Per row of the scan, from the versions of its key (the unique (bucket,
# key, latest) index): the next newer version (id, Last-Modified), how many
# are newer, whether any is older.
_SUCCESSOR_ID = select(func.min(_n.c.id)).where(_same_key(), _n.c.id > _o.c.id).scalar_subquery()
# The next newer version's row, joined by id (an ORDER BY id LIMIT 1 would
# let MariaDB walk the primary key instead of the key's index entries).
_s = tables.objects.alias("successor")
_NEWER = select(func.count()).select_from(_n).where(_same_key(), _n.c.id > _o.c.id).scalar_subquery()
_ANY_NEWER = exists().where(_same_key(), _n.c.id > _o.c.id)
_ANY_OLDER = exists().where(_same_key(), _n.c.id < _o.c.id)


def lifecycle_versions_page(
    conn: Connection, bucket: str, prefix: str, after_key: str, after_id: int, limit: int
) -> list[LifecycleVersion]:
    """
    Up to C{limit} versions of C{bucket}'s keys under C{prefix} that a
    lifecycle rule may remove, after (C{after_key}, C{after_id}) in (key, row
    id) order: the noncurrent ones (delete markers too) and the delete
    markers that are their key's only version.  Each with when it became
    noncurrent (its next newer version's Last-Modified) and how many
    noncurrent versions are newer (every newer one but the newest).

    One range scan of the rows with C{latest} NULL (the noncurrent versions
    and the delete markers; a bucket never versioned has none) in the
    (bucket, key, latest) index and, per row found, a few lookups of its
    key's versions in that index.  PostgreSQL sorts each key's rows by id as
    it goes (an incremental sort) and stops at C{limit}; MariaDB sorts the
    rows after the cursor under the prefix (a filesort) first.
    """
    prefix_b, after_b = encode_key(prefix), encode_key(after_key)
    query = select(
        _o,
        _s.c.id.label("successor_id"),
        _s.c.last_modified.label("successor_modified"),
        _NEWER.label("newer"),
    ).select_from(
        _o.outerjoin(_s, _s.c.id == _SUCCESSOR_ID)
    ).where(
        _o.c.bucket == bucket,
        _o.c.latest.is_(None),
        (_o.c.delete_marker == 0) | _ANY_NEWER | ~_ANY_OLDER,
    )
    if after_b >= prefix_b:
        query = query.where(_o.c.key >= after_b, (_o.c.key > after_b) | (_o.c.id > after_id))
    else:
        query = query.where(_o.c.key >= prefix_b)
    upper = successor(prefix_b)
    if upper is not None:
        query = query.where(_o.c.key < upper)
    rows = conn.execute(query.order_by(_o.c.key, _o.c.latest, _o.c.id).limit(max(0, limit)))
    found = []
    for row in rows:
        newer = int(row.newer)
        found.append(LifecycleVersion(
            record=object_record(row),
            successor_id=None if row.successor_id is None else int(row.successor_id),
            noncurrent_since=row.successor_modified,
            newer_noncurrent=max(0, newer - 1),
        ))
    return found


def expire_version(
    conn: Connection, bucket: str, version: LifecycleVersion, now: datetime.datetime, grace: datetime.timedelta
) -> Deletion:
    """
    Remove C{version} by L{objects.delete_object} with its version id (the
    one path that removes a version: its bytes are queued for deletion, and
    what keeps a version, it keeps), only while it is still as
    L{lifecycle_versions_page} read it: the same row with the same tags,
    and the same next newer version with at least as many newer ones (so
    it became noncurrent when it was read to, and is no newer among them
    than it was), or, a lone delete marker, still its key's only version.
    The key's usage row is locked first, as every change of its versions
    locks it (store/versions.py): no change of the key comes between the
    check and the removal.  -> what was removed (nothing: not as read).
    """
    record = version.record
    key = encode_key(record.key)
    quotas.lock_shard(conn, bucket, quotas.shard_of(key))
    row = conn.execute(
        select(_o).where(_o.c.bucket == bucket, _o.c.key == key, _o.c.id == record.id).with_for_update()
    ).first()
    if row is None or not same_version(row, record):
        return Deletion()
    newer = (_o.c.bucket == bucket) & (_o.c.key == key) & (_o.c.id > row.id)
    next_id = conn.execute(select(func.min(_o.c.id)).where(newer)).scalar()
    if version.lone_marker:
        older = (_o.c.bucket == bucket) & (_o.c.key == key) & (_o.c.id < row.id)
        if next_id is not None or conn.execute(select(_o.c.id).where(older).limit(1)).first() is not None:
            return Deletion()
    else:
        count = conn.execute(select(func.count()).select_from(_o).where(newer)).scalar() or 0
        if next_id != version.successor_id or count - 1 < version.newer_noncurrent:
            return Deletion()
    return objects.delete_object(conn, bucket, record.key, now, grace, version_id=record.version_id or NULL_VERSION)
