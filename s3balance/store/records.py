"""Conversions between table rows and the store's value classes."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any, Optional, Union
from urllib.parse import quote, unquote

from sqlalchemy.engine import Row

from s3balance.store.interfaces import (
    BucketRecord,
    Location,
    MultipartRecord,
    ObjectRecord,
    QueuedDeletion,
    TagSet,
)


def encode_key(key: str) -> bytes:
    """S3 keys are compared as their UTF-8 bytes."""
    return key.encode("utf-8")


def decode_key(raw: Union[bytes, bytearray, memoryview]) -> str:
    return bytes(raw).decode("utf-8")


def dump_mapping(mapping: Mapping[str, str]) -> str:
    return json.dumps(dict(mapping), sort_keys=True, separators=(",", ":"))


def load_mapping(text: str) -> dict[str, str]:
    return json.loads(text) if text else {}


def dump_tags(tags: TagSet) -> Optional[str]:
    """
    The stored text of a tag set: its pairs in key order, URL-encoded as an
    C{x-amz-tagging} header (C{k=v&k2=v2}, every reserved character
    escaped); None (NULL) for no tags.
    """
    if not tags:
        return None
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in sorted(tags))


def load_tags(text: Optional[str]) -> TagSet:
    """L{dump_tags}' inverse (NULL or empty: no tags)."""
    if not text:
        return ()
    pairs = (piece.partition("=") for piece in text.split("&"))
    return tuple((unquote(key, errors="strict"), unquote(value, errors="strict")) for key, _, value in pairs)


def whole_seconds(moment: datetime.datetime) -> datetime.datetime:
    """S3 timestamps have whole seconds; MySQL DATETIME would truncate anyway."""
    return moment.astimezone(datetime.UTC).replace(microsecond=0)


def object_values(record: ObjectRecord) -> dict[str, Any]:
    return {
        "bucket": record.bucket,
        "key": encode_key(record.key),
        "size": record.size,
        "etag": record.etag,
        "last_modified": whole_seconds(record.last_modified),
        "content_type": record.content_type,
        "headers": dump_mapping(record.headers),
        "checksums": dump_mapping(record.checksums),
        "tags": dump_tags(record.tags),
        "acl": record.acl,
        "lock_mode": record.lock_mode,
        "lock_until": record.lock_until,
        "legal_hold": 1 if record.legal_hold else 0,
    }


def _listed_columns(row: Row) -> dict[str, Any]:
    """The fields of an object's record from the columns every read of it selects (a listing's too)."""
    return {
        "bucket": row.bucket,
        "key": decode_key(row.key),
        "size": row.size,
        "etag": row.etag,
        "last_modified": row.last_modified,
        "content_type": row.content_type,
        "headers": load_mapping(row.headers),
        "checksums": load_mapping(row.checksums),
        "id": row.id,
    }


def object_record(row: Row, locations: tuple[Location, ...] = ()) -> ObjectRecord:
    """A row of objects as read (a row without the tags, ACL, version or lock columns: their defaults)."""
    return ObjectRecord(
        **_listed_columns(row),
        locations=locations,
        tags=load_tags(getattr(row, "tags", None)),
        acl=getattr(row, "acl", None),
        version_id=getattr(row, "version_id", None),
        delete_marker=bool(getattr(row, "delete_marker", 0)),
        lock_mode=getattr(row, "lock_mode", None),
        lock_until=getattr(row, "lock_until", None),
        legal_hold=bool(getattr(row, "legal_hold", 0)),
    )


def listed_record(row: Row) -> ObjectRecord:
    """
    A listing's row (store/listing_sql's columns): no tags, ACL, version or
    lock, and no lookup of them (a failed attribute lookup on a row raises
    and catches an exception: microseconds, times 1000 rows a page).
    """
    return ObjectRecord(**_listed_columns(row), locations=())


def bucket_record(row: Row) -> BucketRecord:
    return BucketRecord(
        name=row.name,
        created=row.created,
        origin=row.origin,
        tags=load_tags(row.tags),
        owner=row.owner,
        acl=row.acl,
        # Selected by get_bucket only (the policy joined from bucket_policies).
        policy=getattr(row, "policy", None),
        public_access_block=getattr(row, "public_access_block", None),
        versioning=getattr(row, "versioning", None),
        object_lock=getattr(row, "object_lock", None),
    )


def multipart_record(row: Row) -> MultipartRecord:
    return MultipartRecord(
        upload_id=row.upload_id,
        bucket=row.bucket,
        key=decode_key(row.key),
        backend=row.backend,
        real_key=row.real_key,
        backend_upload_id=row.backend_upload_id,
        initiated=row.initiated,
        content_type=row.content_type,
        headers=load_mapping(row.headers),
        tags=load_tags(row.tags),
        acl=row.acl,
        lock_mode=row.lock_mode,
        lock_until=row.lock_until,
        legal_hold=bool(row.legal_hold),
    )


def queued_deletion(row: Row) -> QueuedDeletion:
    return QueuedDeletion(
        id=row.id,
        backend=row.backend,
        real_key=row.real_key,
        backend_upload_id=row.backend_upload_id,
        attempts=row.attempts,
        reason=row.reason or "",
    )
