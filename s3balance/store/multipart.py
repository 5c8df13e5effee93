"""SQL for multipart upload records (ours; the parts live on the backend)."""

from __future__ import annotations

import datetime
from typing import Optional

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.engine import Connection

from s3balance.store import buckets, tables
from s3balance.store.interfaces import MultipartRecord, NoSuchUploadError, ObjectRecord, WriteIntentExpired
from s3balance.store.listing import successor
from s3balance.store.objects import REASON_MULTIPART_ABORTED, queue_deletion, replace_object, take_intent
from s3balance.store.records import dump_mapping, encode_key, multipart_record

_mp = tables.multipart_uploads


def create_multipart(conn: Connection, record: MultipartRecord, intent_id: Optional[int] = None) -> None:
    """
    Record an upload the backend opened.  With C{intent_id}, the write intent
    taken before the backend's CreateMultipartUpload is settled in the same
    transaction (L{WriteIntentExpired} when its lease ran out: the cleaner
    may already be aborting that upload).
    """
    if intent_id is not None:
        if take_intent(conn, intent_id) is None:
            raise WriteIntentExpired(intent_id)
    conn.execute(
        insert(_mp).values(
            upload_id=record.upload_id,
            bucket=record.bucket,
            key=encode_key(record.key),
            backend=record.backend,
            real_key=record.real_key,
            backend_upload_id=record.backend_upload_id,
            initiated=record.initiated,
            content_type=record.content_type,
            headers=dump_mapping(record.headers),
        )
    )


def get_multipart(conn: Connection, upload_id: str, for_update: bool = False) -> Optional[MultipartRecord]:
    query = select(_mp).where(_mp.c.upload_id == upload_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return multipart_record(row) if row is not None else None


def list_multipart(
    conn: Connection,
    bucket: str,
    prefix: str,
    key_marker: str,
    upload_id_marker: str,
    max_uploads: int,
) -> list[MultipartRecord]:
    """Ordered by (key, initiated, upload_id); the markers follow ListMultipartUploads."""
    prefix_b = encode_key(prefix)
    query = select(_mp).where(_mp.c.bucket == bucket, _mp.c.key >= prefix_b)
    upper = successor(prefix_b)
    if upper is not None:
        query = query.where(_mp.c.key < upper)
    if key_marker:
        marker_b = encode_key(key_marker)
        after_marker = _mp.c.key > marker_b
        marker = get_multipart(conn, upload_id_marker) if upload_id_marker else None
        if marker is not None and marker.key == key_marker:
            after_marker = or_(
                after_marker,
                and_(
                    _mp.c.key == marker_b,
                    or_(
                        _mp.c.initiated > marker.initiated,
                        and_(_mp.c.initiated == marker.initiated, _mp.c.upload_id > upload_id_marker),
                    ),
                ),
            )
        query = query.where(after_marker)
    query = query.order_by(_mp.c.key, _mp.c.initiated, _mp.c.upload_id).limit(max_uploads)
    return [multipart_record(row) for row in conn.execute(query)]


def complete_multipart(
    conn: Connection,
    upload_id: str,
    record: ObjectRecord,
    now: datetime.datetime,
    grace: datetime.timedelta = datetime.timedelta(0),
) -> ObjectRecord:
    result = conn.execute(delete(_mp).where(_mp.c.upload_id == upload_id))
    if result.rowcount != 1:
        raise NoSuchUploadError(upload_id)
    return replace_object(conn, record, None, None, now, grace)


def abort_multipart(
    conn: Connection, upload_id: str, queue_backend_abort: bool, now: datetime.datetime
) -> Optional[MultipartRecord]:
    record = get_multipart(conn, upload_id, for_update=True)
    if record is None:
        return None
    conn.execute(delete(_mp).where(_mp.c.upload_id == upload_id))
    if queue_backend_abort:
        queue_deletion(
            conn,
            record.backend,
            record.real_key,
            REASON_MULTIPART_ABORTED,
            now,
            backend_upload_id=record.backend_upload_id,
        )
    return record


def stale_multipart(conn: Connection, older_than: datetime.datetime, limit: int) -> list[MultipartRecord]:
    rows = conn.execute(
        select(_mp)
        .where(_mp.c.initiated < older_than)
        .order_by(_mp.c.initiated, _mp.c.upload_id)
        .limit(limit)
    )
    return [multipart_record(row) for row in rows]

def delete_bucket(conn: Connection, name: str, now: datetime.datetime) -> int:
    """
    Delete a bucket without objects and abort its open multipart uploads
    (their backend uploads queued for the deletion worker), in one
    transaction.  -> how many uploads were aborted.
    """
    upload_ids = buckets.delete_bucket(conn, name)
    for upload_id in upload_ids:
        abort_multipart(conn, upload_id, True, now)
    return len(upload_ids)
