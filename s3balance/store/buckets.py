"""SQL for the buckets table: the virtual buckets clients see."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Optional

from sqlalchemy import Table, bindparam, delete, exists, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from s3balance.store import quotas, tables
from s3balance.store.interfaces import (
    BucketExists,
    BucketNotEmpty,
    BucketRecord,
    ConcurrentInsert,
    ConfigBucketError,
    NoSuchBucketError,
    TagSet,
)
from s3balance.store.records import bucket_record, dump_tags

ORIGIN_CONFIG = "config"
ORIGIN_API = "api"

_b = tables.buckets


def sync_config_buckets(conn: Connection, names: Sequence[str], now: datetime.datetime) -> None:
    """
    Make the rows of origin 'config' exactly the configured names.

    A configured name that exists as an 'api' bucket becomes 'config'; a
    bucket dropped from the configuration becomes 'api', so an empty one can
    then be deleted through the API (its objects are never touched here).
    """
    wanted = set(names)
    existing = {row.name: row.origin for row in conn.execute(select(_b.c.name, _b.c.origin))}
    for name in sorted(wanted - existing.keys()):
        if conn.dialect.name == "sqlite":
            # Writers take turns: a row made since the read fails the commit
            # ("database is locked"), and the runner runs it all again.
            conn.execute(insert(_b).values(name=name, created=now, origin=ORIGIN_CONFIG))
            continue
        try:
            with conn.begin_nested():
                conn.execute(insert(_b).values(name=name, created=now, origin=ORIGIN_CONFIG))
        except IntegrityError:
            # Made since the read: by another daemon starting on the same
            # database (or by CreateBucket); configured, so ours (the UPDATE
            # below reads the newest row, as a read here might not).
            existing[name] = ORIGIN_API
    promote = [n for n in wanted if existing.get(n) == ORIGIN_API]
    if promote:
        conn.execute(update(_b).where(_b.c.name.in_(promote)).values(origin=ORIGIN_CONFIG))
    demote = [n for n, origin in existing.items() if origin == ORIGIN_CONFIG and n not in wanted]
    if demote:
        conn.execute(update(_b).where(_b.c.name.in_(demote)).values(origin=ORIGIN_API))


def list_buckets(conn: Connection) -> list[BucketRecord]:
    return [bucket_record(row) for row in conn.execute(select(_b).order_by(_b.c.name))]


def get_bucket(conn: Connection, name: str) -> Optional[BucketRecord]:
    """The bucket, with its policy (one read: every request is decided on the current one)."""
    policies = tables.bucket_policies
    row = conn.execute(
        select(_b, policies.c.policy)
        .select_from(_b.outerjoin(policies, policies.c.bucket == _b.c.name))
        .where(_b.c.name == name)
    ).first()
    return bucket_record(row) if row is not None else None


def create_bucket(
    conn: Connection,
    name: str,
    now: datetime.datetime,
    owner: Optional[str] = None,
    acl: Optional[str] = None,
    object_lock: Optional[str] = None,
) -> BucketRecord:
    """A bucket of the API; with C{object_lock}, Object Lock enabled, and versioning with it (as on S3)."""
    versioning = "Enabled" if object_lock is not None else None
    try:
        conn.execute(insert(_b).values(
            name=name, created=now, origin=ORIGIN_API, owner=owner, acl=acl, versioning=versioning,
            object_lock=object_lock,
        ))
    except IntegrityError:
        raise BucketExists(name) from None
    return BucketRecord(
        name=name, created=now, origin=ORIGIN_API, owner=owner, acl=acl, versioning=versioning,
        object_lock=object_lock,
    )


def set_bucket_document(conn: Connection, table: Table, column: str, name: str, text: Optional[str]) -> bool:
    """
    Replace bucket C{name}'s row of C{table}, one per bucket holding a
    document in C{column} (a lifecycle configuration, a policy; None:
    remove it). -> whether the bucket exists.
    """
    # The bucket's row, share-locked: a DeleteBucket waits, and the
    # document never outlives its bucket nor lands on a bucket being deleted.
    if conn.execute(select(_b.c.name).where(_b.c.name == name).with_for_update(read=True)).first() is None:
        return False
    conn.execute(delete(table).where(table.c.bucket == name))
    if text is not None:
        try:
            conn.execute(insert(table).values({"bucket": name, column: text}))
        except IntegrityError as e:
            # Two puts at once: the runner runs this one again, after the other.
            raise ConcurrentInsert(name) from e
    return True


def set_bucket_owner(conn: Connection, name: str, owner: Optional[str]) -> bool:
    """Record the bucket's owning account (None: the default owner). -> whether the bucket exists."""
    return conn.execute(update(_b).where(_b.c.name == name).values(owner=owner)).rowcount == 1


def set_bucket_tags(conn: Connection, name: str, tags: TagSet) -> bool:
    """Replace the bucket's tag set (PutBucketTagging, DeleteBucketTagging). -> whether the bucket exists."""
    return conn.execute(update(_b).where(_b.c.name == name).values(tags=dump_tags(tags))).rowcount == 1


def set_bucket_acl(conn: Connection, name: str, acl: Optional[str]) -> bool:
    """Replace the bucket's ACL (PutBucketAcl; s3.acl.dump's text). -> whether the bucket exists."""
    return conn.execute(update(_b).where(_b.c.name == name).values(acl=acl)).rowcount == 1


_LOCK_BUCKET_SHARED = (
    select(_b.c.name, _b.c.versioning).where(_b.c.name == bindparam("name")).with_for_update(read=True)
)


def lock_bucket_shared(conn: Connection, name: str) -> Optional[str]:
    """
    Hold a share lock on the bucket row until the transaction ends, so a
    concurrent delete_bucket or PutBucketVersioning (which take it
    exclusively) can't remove the bucket or change its versioning under an
    object being written.  -> its versioning status (None: never enabled).
    NoSuchBucketError when missing.
    """
    found = conn.execute(_LOCK_BUCKET_SHARED, {"name": name}).first()
    if found is None:
        raise NoSuchBucketError(name)
    return found.versioning


def delete_bucket(conn: Connection, name: str) -> list[str]:
    """
    Delete a bucket without objects.  -> the ids of its open multipart
    uploads, which do not keep it (as on S3): the caller aborts them in the
    same transaction (L{s3balance.store.multipart.delete_bucket}).

    The exclusive lock on the bucket row keeps a concurrent write or
    CreateMultipartUpload (which take it shared) from slipping in.
    """
    row = conn.execute(select(_b.c.origin).where(_b.c.name == name).with_for_update()).first()
    if row is None:
        raise NoSuchBucketError(name)
    if row.origin != ORIGIN_API:
        raise ConfigBucketError(name)
    has_objects = conn.execute(select(exists().where(tables.objects.c.bucket == name))).scalar()
    if has_objects:
        raise BucketNotEmpty(name)
    _mp = tables.multipart_uploads
    uploads = list(conn.execute(select(_mp.c.upload_id).where(_mp.c.bucket == name)).scalars())
    conn.execute(_b.delete().where(_b.c.name == name))
    quotas.forget_bucket(conn, name)
    return uploads
