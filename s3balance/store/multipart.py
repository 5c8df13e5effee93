"""SQL for multipart upload records (ours; the parts live on the backend)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Optional

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from s3balance.store import buckets, parts, tables
from s3balance.store.deletion_queue import REASON_MULTIPART_ABORTED, queue_deletion
from s3balance.store.interfaces import (
    ListPage,
    MultipartRecord,
    NoSuchUploadError,
    ObjectRecord,
    WriteIntentExpired,
)
from s3balance.store.listing import RunawayListing, common_prefix, step_limit, successor
from s3balance.store.objects import replace_object, take_intent
from s3balance.store.records import decode_key, dump_mapping, dump_tags, encode_key, multipart_record

_mp = tables.multipart_uploads


def create_multipart(conn: Connection, record: MultipartRecord, intent_id: Optional[int] = None) -> None:
    """
    Record an upload the backend opened.  With C{intent_id}, the write intent
    taken before the backend's CreateMultipartUpload is settled in the same
    transaction (L{WriteIntentExpired} when its lease ran out: the cleaner
    may already be aborting that upload).

    The bucket row is share-locked as an object's commit locks it
    (L{buckets.lock_bucket_shared}), so a concurrent DeleteBucket either
    waits for this upload and aborts it with the bucket, or deletes the
    bucket first and this fails with L{NoSuchBucketError}; then nothing is
    recorded and the intent stays (its lease's end has the backend's upload
    aborted), as for a commit into a missing bucket.
    """
    if intent_id is not None:
        if take_intent(conn, intent_id) is None:
            raise WriteIntentExpired(intent_id)
    buckets.lock_bucket_shared(conn, record.bucket)
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
            tags=dump_tags(record.tags),
            acl=record.acl,
            lock_mode=record.lock_mode,
            lock_until=record.lock_until,
            legal_hold=1 if record.legal_hold else 0,
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
        query = query.where(_after_markers(conn, bucket, key_marker, upload_id_marker))
    query = query.order_by(_mp.c.key, _mp.c.initiated, _mp.c.upload_id).limit(max_uploads)
    return [multipart_record(row) for row in conn.execute(query)]


def list_multipart_page(
    conn: Connection,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_id_marker: str,
    max_uploads: int,
) -> ListPage:
    """
    One page of ListMultipartUploads: uploads (L{MultipartRecord}) and
    common prefixes (C{str}) in (key, initiated, upload_id) order, keys
    folded on their UTF-8 bytes as L{listing.list_objects} folds them.

    After a common prefix CP the scan goes on at C{successor(CP)}, the first
    byte string above every key starting with CP (a key may contain
    U+10FFFF, so no character appended to CP is a bound).  A key marker
    inside a common prefix, or equal to it, means that prefix was listed
    already.  C{next_marker} is the last entry's key or common prefix;
    the caller takes the next upload id marker from the last entry.  Upload
    markers are as L{_after_markers} takes them.  C{max_uploads} 0 answers
    an empty page that is not truncated, as ListObjects' max-keys 0 does.
    """
    if max_uploads <= 0:
        return ListPage(entries=(), is_truncated=False, next_marker=None)
    prefix_b = encode_key(prefix)
    delimiter_b = encode_key(delimiter)
    upper = successor(prefix_b)
    in_range = [_mp.c.bucket == bucket, _mp.c.key >= prefix_b]
    if upper is not None:
        in_range.append(_mp.c.key < upper)

    # Where the scan goes on: a condition on (key, initiated, upload_id).
    position = None
    if key_marker:
        marker_b = encode_key(key_marker)
        folded = common_prefix(marker_b, prefix_b, delimiter_b) if marker_b.startswith(prefix_b) else None
        if folded is not None:
            beyond = successor(folded)
            if beyond is None:
                return ListPage(entries=(), is_truncated=False, next_marker=None)
            position = _mp.c.key >= beyond
        else:
            position = _after_markers(conn, bucket, key_marker, upload_id_marker)

    wanted = max_uploads + 1  # one more than a page tells whether it is truncated
    entries: list = []
    batch = 64
    for _ in range(step_limit(wanted)):
        if len(entries) >= wanted:
            break
        limit = min(batch, wanted - len(entries))
        query = select(_mp).where(*in_range)
        if position is not None:
            query = query.where(position)
        rows = conn.execute(query.order_by(_mp.c.key, _mp.c.initiated, _mp.c.upload_id).limit(limit)).all()
        folded = None
        folded_key = b""
        for row in rows:
            record = multipart_record(row)
            folded_key = bytes(row.key)
            folded = common_prefix(folded_key, prefix_b, delimiter_b)
            if folded is not None:
                entries.append(decode_key(folded))
                break
            entries.append(record)
            position = _after_upload(record)
        if folded is not None:
            beyond = successor(folded)
            if beyond is None or (upper is not None and beyond >= upper):
                break
            if beyond <= folded_key:
                raise RunawayListing(f"ListMultipartUploads would read {entries[-1]!r} again")
            position = _mp.c.key >= beyond
            batch = 2  # the next common prefix may well come right after
        elif len(rows) < limit:
            break  # the range holds nothing more
        else:
            batch = 2 * limit
    else:
        raise RunawayListing(f"ListMultipartUploads made no page of {wanted} in {step_limit(wanted)} steps")

    truncated = len(entries) > max_uploads
    entries = entries[:max_uploads]
    next_marker = None
    if truncated and entries:
        last = entries[-1]
        next_marker = last if isinstance(last, str) else last.key
    return ListPage(entries=tuple(entries), is_truncated=truncated, next_marker=next_marker)


def _after_markers(conn: Connection, bucket: str, key_marker: str, upload_id_marker: str) -> ColumnElement[bool]:
    """
    Where a listing goes on after ListMultipartUploads' key-marker K and
    upload-id-marker U, in the listing's (key, initiated, upload_id) order.

    Without U: at the keys after K.  With U: at the uploads of K after U in
    that order, then the keys after K; U's place is the values (K, U's
    initiation time, U), the time read from U's row.  When U has no row of
    key K in C{bucket} (completed or aborted since the page that ended with
    it, or never one of K's), its initiation time, and so its place, is
    unknown: the listing goes on at the first open upload of K.  Uploads of
    K listed on earlier pages may come again then, but none still open is
    skipped, as going on after K would skip them, or comparing upload ids
    alone (S3's documented rule: uploads of one key are in initiation
    order, not upload id order).
    """
    marker_b = encode_key(key_marker)
    if not upload_id_marker:
        return _mp.c.key > marker_b
    initiated = conn.execute(
        select(_mp.c.initiated).where(
            _mp.c.upload_id == upload_id_marker, _mp.c.bucket == bucket, _mp.c.key == marker_b
        )
    ).scalar()
    if initiated is None:
        return _mp.c.key >= marker_b
    return _after_place(marker_b, initiated, upload_id_marker)


def _after_upload(record: MultipartRecord) -> ColumnElement[bool]:
    """The uploads after C{record} in (key, initiated, upload_id) order."""
    return _after_place(encode_key(record.key), record.initiated, record.upload_id)


def _after_place(key_b: bytes, initiated: datetime.datetime, upload_id: str) -> ColumnElement[bool]:
    """The uploads after the place (C{key_b}, C{initiated}, C{upload_id}) in (key, initiated, upload_id) order."""
    return or_(
        _mp.c.key > key_b,
        and_(
            _mp.c.key == key_b,
            or_(
                _mp.c.initiated > initiated,
                and_(_mp.c.initiated == initiated, _mp.c.upload_id > upload_id),
            ),
        ),
    )


def complete_multipart(
    conn: Connection,
    upload_id: str,
    record: ObjectRecord,
    now: datetime.datetime,
    grace: datetime.timedelta = datetime.timedelta(0),
    if_match: Optional[str] = None,
    if_none_match: Optional[str] = None,
    object_parts: Sequence[parts.PartRecord] = (),
) -> ObjectRecord:
    """
    The upload becomes the object (preconditions as PutObject's,
    L{PreconditionFailedError} with nothing changed), its parts' records go
    (C{object_parts}, those of the object, are kept by its real key) and its
    outcome is remembered for a retried Complete (store.parts).
    """
    result = conn.execute(delete(_mp).where(_mp.c.upload_id == upload_id))
    if result.rowcount != 1:
        raise NoSuchUploadError(upload_id)
    stored = replace_object(conn, record, if_match, if_none_match, now, grace)
    parts.drop_parts(conn, upload_id)
    parts.keep_object_parts(conn, record.locations[0].real_key, object_parts)
    parts.remember_completion(conn, upload_id, record, now)
    return stored


def abort_multipart(
    conn: Connection, upload_id: str, queue_backend_abort: bool, now: datetime.datetime
) -> Optional[MultipartRecord]:
    record = get_multipart(conn, upload_id, for_update=True)
    if record is None:
        return None
    conn.execute(delete(_mp).where(_mp.c.upload_id == upload_id))
    parts.drop_parts(conn, upload_id)
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
    """Uploads idle since before C{older_than}: no part since then (nor, without parts, initiated since)."""
    rows = conn.execute(
        select(_mp)
        .where(_mp.c.initiated < older_than, func.coalesce(_mp.c.last_part, _mp.c.initiated) < older_than)
        .order_by(_mp.c.initiated, _mp.c.upload_id)
        .limit(limit)
    )
    return [multipart_record(row) for row in rows]


def touch_multipart(conn: Connection, upload_id: str, now: datetime.datetime) -> None:
    """The upload received a part (UploadPartCopy: UploadPart goes through L{record_part})."""
    conn.execute(update(_mp).where(_mp.c.upload_id == upload_id).values(last_part=now))


# -- parts ---------------------------------------------------------------------


def record_part(conn: Connection, intent_id: int, upload_id: str, size: int, now: datetime.datetime) -> None:
    """
    An UploadPart succeeded: its write intent (which reserved C{size} bytes,
    objects.begin_write) is taken and the bytes stay reserved in the upload's
    row until it is completed or aborted, which deletes the row.  A part sent
    again counts again until then.  An upload aborted meanwhile has no row:
    nothing to keep.
    """
    if take_intent(conn, intent_id) is None:
        raise WriteIntentExpired(intent_id)
    conn.execute(
        update(_mp).where(_mp.c.upload_id == upload_id).values(reserved=_mp.c.reserved + size, last_part=now)
    )


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
