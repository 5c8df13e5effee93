"""
SQL for the virtual buckets' usage and quotas.

Usage is exact, not a counter refreshed now and then: every transaction that
stores, replaces or removes an object (commit_object, complete_multipart,
delete_object, delete_objects, and the operator tools that record or drop
objects) adds its difference to the bucket's C{bucket_usage} in the same
transaction (L{add_usage}).  A bucket's usage is spread over
L{USAGE_SHARDS} rows, chosen by a hash of the object key, so that commits of
different keys of one bucket rarely wait for one row's lock (on PostgreSQL
and MariaDB a row updated by a commit stays locked until its COMMIT has
reached the disk); a missing row counts 0.

A write reserves against its bucket's quota as it does against its backend's
max_size (objects.check_capacity): its write intent carries the bucket, its
bytes and the objects it would add (1 for an object, 0 for a part, which
adds to its upload's), and an open multipart upload holds its parts' bytes
(C{multipart_uploads.reserved}) and one object.  L{check_quota} runs in the
intent's transaction under a lock on the bucket's C{quota_locks} row, so the
checks of all daemons on one bucket take turns (SQLite serializes writers
anyway: BEGIN IMMEDIATE); it reads usage and reservations in ONE statement,
so a commit that turns an intent into usage meanwhile is seen entirely or
not at all.  An intent does not know whether its key exists, so every
object write reserves one object until it commits; an overwrite then counts
no new object (S3-like systems count it so too).

The counters can still drift from the object rows (a row changed by hand,
a restored database, a bug): L{recount_usage} sets them to what the rows add
up to, safely while the daemons write (see its docstring).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Optional

from sqlalchemy import BigInteger, Select, bindparam, delete, func, insert, literal_column, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.elements import BindParameter

from s3balance.store import tables
from s3balance.store.interfaces import (
    BucketUsage,
    ConcurrentInsert,
    ConfigQuotaError,
    NoSuchBucketError,
    Quota,
    QuotaExceeded,
    UsageRecount,
)

# Who set a quota (buckets.quota_origin).
QUOTA_FROM_CONFIG = "config"
QUOTA_FROM_API = "api"

USAGE_SHARDS = 16

_b = tables.buckets
_bu = tables.bucket_usage
_ql = tables.quota_locks
_wi = tables.write_intents
_mp = tables.multipart_uploads
_o = tables.objects


def shard_of(key_bytes: bytes) -> int:
    """The usage row of an object key (its UTF-8 bytes)."""
    return zlib.crc32(key_bytes) % USAGE_SHARDS


# -- usage ---------------------------------------------------------------------

# Built once (the PUT path runs them); values are bound per call.
_ADD_USAGE = (
    update(_bu)
    .where(_bu.c.bucket == bindparam("u_bucket"), _bu.c.shard == bindparam("u_shard"))
    .values(
        used_bytes=_bu.c.used_bytes + bindparam("u_bytes", type_=BigInteger()),
        object_count=_bu.c.object_count + bindparam("u_objects", type_=BigInteger()),
    )
)
_INSERT_USAGE = insert(_bu)


def add_usage(conn: Connection, bucket: str, shard: int, delta_bytes: int, delta_objects: int) -> None:
    """Add to one usage row of C{bucket} (made when missing).  Call it last in a transaction: it holds the row."""
    if not delta_bytes and not delta_objects:
        return
    changed = conn.execute(
        _ADD_USAGE, {"u_bucket": bucket, "u_shard": shard, "u_bytes": delta_bytes, "u_objects": delta_objects}
    ).rowcount
    if changed == 0:
        try:
            conn.execute(
                _INSERT_USAGE,
                {"bucket": bucket, "shard": shard, "used_bytes": delta_bytes, "object_count": delta_objects},
            )
        except IntegrityError as e:
            # Another transaction made the row meanwhile: ours runs again and adds to it.
            raise ConcurrentInsert(bucket, shard) from e


_LOCK_SHARD = (
    update(_bu)
    .where(_bu.c.bucket == bindparam("u_bucket"), _bu.c.shard == bindparam("u_shard"))
    .values(used_bytes=_bu.c.used_bytes)
)


def lock_shard(conn: Connection, bucket: str, shard: int) -> None:
    """
    Lock one usage row of C{bucket} (made when missing) until the transaction
    ends, first: the changes of a key's versions take turns on it
    (store/versions.py).  A no-op UPDATE, as L{recount_usage}'s.
    """
    if conn.execute(_LOCK_SHARD, {"u_bucket": bucket, "u_shard": shard}).rowcount == 0:
        try:
            conn.execute(_INSERT_USAGE, {"bucket": bucket, "shard": shard, "used_bytes": 0, "object_count": 0})
        except IntegrityError as e:
            raise ConcurrentInsert(bucket, shard) from e


def add_usage_of_keys(conn: Connection, bucket: str, deltas: Mapping[int, tuple[int, int]]) -> None:
    """L{add_usage} for several rows (shard -> (bytes, objects)), in shard order so two such transactions never deadlock."""
    for shard, (delta_bytes, delta_objects) in sorted(deltas.items()):
        add_usage(conn, bucket, shard, delta_bytes, delta_objects)


def recount_usage(conn: Connection, bucket: str) -> UsageRecount:
    """
    Set C{bucket}'s usage to the bytes and the number of its object rows, in
    the caller's ONE transaction; NoSuchBucketError when there is no such
    bucket.  The total goes to shard 0 and the other shards to 0 (a bucket's
    usage is the sum of its rows; a shard may go below 0 afterwards, when an
    object counted in shard 0 is deleted).

    Safe while the daemons commit and delete, without stopping them:

      1. Every usage row of the bucket is locked first, with a no-op UPDATE
         (SQLite: it takes the database's write lock, so the transaction is
         serialized with every other writer from here on; PostgreSQL and
         MariaDB: row locks, in shard order as L{add_usage_of_keys} takes
         them, and an UPDATE does not start InnoDB's REPEATABLE READ
         snapshot); missing shard rows are inserted (a concurrent insert:
         the transaction runs again), so all L{USAGE_SHARDS} exist and are
         locked.
      2. Only then are the object rows counted (one aggregate).  Every
         transaction that changes an object of the bucket adds its
         difference to a usage row, last (L{add_usage}): one that committed
         before the lock is in the count; one under way waits for our lock
         with its object change not yet visible to the count, and adds its
         difference after our COMMIT, to the recounted total.  Either way it
         is counted once.
      3. Reservations are not usage: write intents (C{size}, C{objects}) and
         open multipart uploads (C{reserved}, one object each) keep theirs.
         An upload in flight has no object row yet, so it is not counted; its
         commit turns its reservation into usage in its own transaction
         (step 2), and the quota check keeps adding usage and reservations
         as before.
    """
    conn.execute(update(_bu).where(_bu.c.bucket == bucket).values(used_bytes=_bu.c.used_bytes))
    present = set(conn.execute(select(_bu.c.shard).where(_bu.c.bucket == bucket).with_for_update()).scalars())
    for shard in range(USAGE_SHARDS):
        if shard not in present:
            try:
                conn.execute(_INSERT_USAGE, {"bucket": bucket, "shard": shard, "used_bytes": 0, "object_count": 0})
            except IntegrityError as e:
                raise ConcurrentInsert(bucket, shard) from e
    rows = conn.execute(
        select(_bu.c.shard, _bu.c.used_bytes, _bu.c.object_count)
        .where(_bu.c.bucket == bucket)
        .order_by(_bu.c.shard)
        .with_for_update()
    ).all()
    before_bytes = sum(int(row.used_bytes) for row in rows)
    before_objects = sum(int(row.object_count) for row in rows)
    counted = conn.execute(
        select(func.count(), func.coalesce(func.sum(_o.c.size), _ZERO)).where(_o.c.bucket == bucket)
    ).first()
    assert counted is not None  # (an aggregate: one row)
    objects, size = int(counted[0]), int(counted[1])
    # (Asked after the lock: a first plain read would start InnoDB's snapshot before it.)
    if conn.execute(select(_b.c.name).where(_b.c.name == bucket)).first() is None:
        raise NoSuchBucketError(bucket)  # (the rows inserted above are rolled back)
    for row in rows:
        wanted = (size, objects) if row.shard == 0 else (0, 0)
        if (int(row.used_bytes), int(row.object_count)) != wanted:
            conn.execute(
                update(_bu)
                .where(_bu.c.bucket == bucket, _bu.c.shard == row.shard)
                .values(used_bytes=wanted[0], object_count=wanted[1])
            )
    return UsageRecount(bucket, before_bytes, before_objects, size, objects)


def usage_drift(conn: Connection, names: Optional[Sequence[str]] = None) -> list[UsageRecount]:
    """
    The buckets (of C{names}, default all) whose usage counters differ from
    their object rows, as a recount would change them (fsck's check).  ONE
    statement per bucket reads both, so a commit (which changes both in one
    transaction) is seen entirely or not at all.  Reads only.
    """
    if names is None:
        names = bucket_names(conn)
    drifted = []
    for name in names:
        row = conn.execute(
            select(
                _sum(_bu.c.used_bytes, _bu.c.bucket == name, "used_bytes"),
                _sum(_bu.c.object_count, _bu.c.bucket == name, "used_objects"),
                _sum(_o.c.size, _o.c.bucket == name, "stored_bytes"),
                select(func.count()).select_from(_o).where(_o.c.bucket == name).scalar_subquery().label("stored"),
            )
        ).first()
        assert row is not None  # (one row of sums, always)
        found = UsageRecount(name, int(row.used_bytes), int(row.used_objects), int(row.stored_bytes), int(row.stored))
        if found.changed:
            drifted.append(found)
    return drifted


def bucket_names(conn: Connection) -> list[str]:
    return list(conn.execute(select(_b.c.name).order_by(_b.c.name)).scalars())


def forget_bucket(conn: Connection, name: str) -> None:
    """A deleted bucket's usage rows and quota lock go with it."""
    conn.execute(delete(_bu).where(_bu.c.bucket == name))
    conn.execute(delete(_ql).where(_ql.c.bucket == name))


# -- the quota check ---------------------------------------------------------------

_ZERO: ColumnElement[int] = literal_column("0")  # not a bound parameter: the raw paths bind only the caller's


def _sum(column: ColumnElement[int], where: ColumnElement[bool], label: str) -> ColumnElement[int]:
    return select(func.coalesce(func.sum(column), _ZERO)).where(where).scalar_subquery().label(label)


_BUCKET: BindParameter[str] = bindparam("bucket")
# One statement, so usage and reservations come from one snapshot.
_HELD = select(
    select(_b.c.quota_bytes).where(_b.c.name == _BUCKET).scalar_subquery().label("quota_bytes"),
    select(_b.c.quota_objects).where(_b.c.name == _BUCKET).scalar_subquery().label("quota_objects"),
    _sum(_bu.c.used_bytes, _bu.c.bucket == _BUCKET, "used_bytes"),
    _sum(_bu.c.object_count, _bu.c.bucket == _BUCKET, "used_objects"),
    _sum(_wi.c.size, _wi.c.bucket == _BUCKET, "write_bytes"),
    _sum(_wi.c.objects, _wi.c.bucket == _BUCKET, "write_objects"),
    _sum(_mp.c.reserved, _mp.c.bucket == _BUCKET, "upload_bytes"),
    select(func.count()).select_from(_mp).where(_mp.c.bucket == _BUCKET).scalar_subquery().label("uploads"),
)
_LOCK_QUOTA = select(_ql.c.bucket).where(_ql.c.bucket == bindparam("bucket")).with_for_update()
_INSERT_QUOTA_LOCK = insert(_ql)


def check_quota(conn: Connection, bucket: str, size: int, objects: int) -> None:
    """
    Raise L{QuotaExceeded} unless C{size} more bytes and C{objects} more
    objects fit C{bucket}'s quota.  The caller's transaction records them (an
    intent's size and objects) before it commits, which releases the lock.
    A bucket without a quota (any more) passes.
    """
    if conn.dialect.name != "sqlite":
        if conn.execute(_LOCK_QUOTA, {"bucket": bucket}).first() is None:
            # The bucket's first checked write: as objects.check_capacity.
            try:
                conn.execute(_INSERT_QUOTA_LOCK, {"bucket": bucket})
            except IntegrityError as e:
                raise ConcurrentInsert(bucket) from e
    held = conn.execute(_HELD, {"bucket": bucket}).first()
    assert held is not None  # (one row of sums, always)
    if held.quota_bytes is not None:
        used, reserved = int(held.used_bytes), int(held.write_bytes) + int(held.upload_bytes)
        if used + reserved + size > held.quota_bytes:
            raise QuotaExceeded(bucket, "max_size", used, reserved, size, int(held.quota_bytes))
    if held.quota_objects is not None and objects:
        used, reserved = int(held.used_objects), int(held.write_objects) + int(held.uploads)
        if used + reserved + objects > held.quota_objects:
            raise QuotaExceeded(bucket, "max_objects", used, reserved, objects, int(held.quota_objects))


# -- reading and setting quotas ---------------------------------------------------------


_HAS_QUOTA = _b.c.quota_bytes.is_not(None) | _b.c.quota_objects.is_not(None)


def quota_buckets(conn: Connection) -> set[str]:
    """The buckets that have a quota."""
    return set(conn.execute(select(_b.c.name).where(_HAS_QUOTA)).scalars())


def sync_config_quotas(conn: Connection, names: Sequence[str], quotas: Mapping[str, Quota]) -> None:
    """
    The quotas of the configured buckets C{names}: those of C{quotas} (origin
    'config'); a quota of origin 'config' that the configuration no longer
    sets (on any bucket) is removed.  Quotas set through the API stay.
    """
    rows = conn.execute(select(_b.c.name, _b.c.quota_bytes, _b.c.quota_objects, _b.c.quota_origin)).all()
    configured = set(names)
    wanted = {name: quota for name, quota in quotas.items() if name in configured and quota.limited}
    for row in rows:
        quota = wanted.get(row.name)
        if quota is not None:
            current = (row.quota_bytes, row.quota_objects, row.quota_origin)
            if current != (quota.max_bytes, quota.max_objects, QUOTA_FROM_CONFIG):
                conn.execute(
                    update(_b)
                    .where(_b.c.name == row.name)
                    .values(quota_bytes=quota.max_bytes, quota_objects=quota.max_objects, quota_origin=QUOTA_FROM_CONFIG)
                )
        elif row.quota_origin == QUOTA_FROM_CONFIG:
            conn.execute(
                update(_b).where(_b.c.name == row.name).values(quota_bytes=None, quota_objects=None, quota_origin=None)
            )


def set_bucket_quota(conn: Connection, name: str, quota: Quota) -> BucketUsage:
    """Set (origin 'api') or, without limits, remove C{name}'s quota; -> its usage."""
    row = conn.execute(select(_b.c.quota_origin).where(_b.c.name == name).with_for_update()).first()
    if row is None:
        raise NoSuchBucketError(name)
    if row.quota_origin == QUOTA_FROM_CONFIG:
        raise ConfigQuotaError(name)
    conn.execute(
        update(_b)
        .where(_b.c.name == name)
        .values(
            quota_bytes=quota.max_bytes,
            quota_objects=quota.max_objects,
            quota_origin=QUOTA_FROM_API if quota.limited else None,
        )
    )
    [usage] = bucket_usage(conn, name)
    return usage


def bucket_usage(conn: Connection, name: Optional[str] = None) -> list[BucketUsage]:
    """Every bucket's (or only C{name}'s) usage, reservations and quota, by name: a few small aggregates."""

    def totals(query: Select[str, int, int]) -> dict[str, tuple[int, int]]:
        return {row[0]: (int(row[1]), int(row[2])) for row in conn.execute(query)}

    def only(column: ColumnElement[str]) -> list[ColumnElement[bool]]:
        return [column == name] if name is not None else []

    used = totals(
        select(_bu.c.bucket, func.sum(_bu.c.used_bytes), func.sum(_bu.c.object_count))
        .where(*only(_bu.c.bucket))
        .group_by(_bu.c.bucket)
    )
    writes = totals(
        select(_wi.c.bucket, func.sum(_wi.c.size), func.sum(_wi.c.objects))
        .where(_wi.c.bucket.is_not(None), *only(_wi.c.bucket))
        .group_by(_wi.c.bucket)
    )
    uploads = totals(
        select(_mp.c.bucket, func.sum(_mp.c.reserved), func.count()).where(*only(_mp.c.bucket)).group_by(_mp.c.bucket)
    )
    rows = conn.execute(
        select(_b.c.name, _b.c.origin, _b.c.quota_bytes, _b.c.quota_objects, _b.c.quota_origin)
        .where(*only(_b.c.name))
        .order_by(_b.c.name)
    )
    found = []
    for row in rows:
        used_bytes, used_objects = used.get(row.name, (0, 0))
        write_bytes, write_objects = writes.get(row.name, (0, 0))
        upload_bytes, upload_count = uploads.get(row.name, (0, 0))
        found.append(
            BucketUsage(
                bucket=row.name,
                origin=row.origin,
                used_bytes=used_bytes,
                object_count=used_objects,
                reserved_bytes=write_bytes + upload_bytes,
                reserved_objects=write_objects + upload_count,
                quota_bytes=None if row.quota_bytes is None else int(row.quota_bytes),
                quota_objects=None if row.quota_objects is None else int(row.quota_objects),
                quota_origin=row.quota_origin,
            )
        )
    return found
