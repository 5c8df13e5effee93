"""
SQL for the parts of multipart uploads as received (size, ETag, verified
checksums) and for uploads completed lately (what their Complete answered).

A part sent again replaces the earlier record: the last UploadPart the
backend confirmed is the part, as on S3.  The rows of an upload go with it
(L{drop_parts}, called when it is completed or aborted).  A completed upload
is remembered for L{COMPLETED_KEPT}, so that a CompleteMultipartUpload
retried after its answer was lost answers the same instead of NoSuchUpload;
older ones are dropped by the completes that come after.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Optional

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from s3balance.store import tables
from s3balance.store.interfaces import CompletedUpload, ConcurrentInsert, ObjectRecord, PartRecord
from s3balance.store.records import decode_key, dump_mapping, encode_key, load_mapping

_parts = tables.multipart_parts
_done = tables.completed_uploads
_object_parts = tables.object_parts
_locations = tables.object_locations
_dq = tables.deletion_queue

COMPLETED_KEPT = datetime.timedelta(hours=12)



def record_part(
    conn: Connection, upload_id: str, number: int, size: int, etag: str, checksums: Mapping[str, str]
) -> None:
    values = {"size": size, "etag": etag, "checksums": dump_mapping(dict(checksums))}
    changed = conn.execute(
        update(_parts).where(_parts.c.upload_id == upload_id, _parts.c.part_number == number).values(**values)
    ).rowcount
    if changed == 0:
        try:
            conn.execute(insert(_parts).values(upload_id=upload_id, part_number=number, **values))
        except IntegrityError as e:
            # The same part's other upload recorded it meanwhile: the
            # transaction runs again and replaces that record.
            raise ConcurrentInsert(upload_id, number) from e


def parts_of(conn: Connection, upload_id: str) -> list[PartRecord]:
    rows = conn.execute(select(_parts).where(_parts.c.upload_id == upload_id).order_by(_parts.c.part_number))
    return [PartRecord(row.part_number, row.size, row.etag, load_mapping(row.checksums)) for row in rows]


def drop_parts(conn: Connection, upload_id: str) -> None:
    conn.execute(delete(_parts).where(_parts.c.upload_id == upload_id))


def remember_completion(conn: Connection, upload_id: str, record: ObjectRecord, now: datetime.datetime) -> None:
    """Remember what the Complete of C{upload_id} made; forget those older than COMPLETED_KEPT."""
    conn.execute(delete(_done).where(_done.c.completed < now - COMPLETED_KEPT))
    conn.execute(
        insert(_done).values(
            upload_id=upload_id,
            bucket=record.bucket,
            key=encode_key(record.key),
            etag=record.etag,
            checksums=dump_mapping(dict(record.checksums)),
            completed=now,
        )
    )


def completed_upload(conn: Connection, upload_id: str, now: datetime.datetime) -> Optional[CompletedUpload]:
    row = conn.execute(select(_done).where(_done.c.upload_id == upload_id)).first()
    if row is None or row.completed < now - COMPLETED_KEPT:
        return None
    return CompletedUpload(
        upload_id=row.upload_id,
        bucket=row.bucket,
        key=decode_key(row.key),
        etag=row.etag,
        checksums=load_mapping(row.checksums),
        completed=row.completed,
    )


# -- the parts of completed objects --------------------------------------------


def keep_object_parts(conn: Connection, real_key: str, object_parts: Sequence[PartRecord]) -> None:
    """Record the parts of the object a Complete made at C{real_key} (a fresh key: nothing to replace)."""
    if object_parts:
        conn.execute(
            insert(_object_parts),
            [
                {
                    "real_key": real_key,
                    "part_number": part.number,
                    "size": part.size,
                    "checksums": dump_mapping(dict(part.checksums)),
                }
                for part in object_parts
            ],
        )


def object_parts_page(conn: Connection, real_key: str, marker: int, max_parts: int) -> tuple[list[PartRecord], bool]:
    """The parts of the object at C{real_key} after part C{marker}: (up to C{max_parts}, truncated)."""
    rows = conn.execute(
        select(_object_parts)
        .where(_object_parts.c.real_key == real_key, _object_parts.c.part_number > marker)
        .order_by(_object_parts.c.part_number)
        .limit(max_parts + 1)
    ).all()
    found = [PartRecord(row.part_number, row.size, "", load_mapping(row.checksums)) for row in rows]
    return found[:max_parts], len(found) > max_parts


def forget_object_parts(conn: Connection, deletion_id: int) -> None:
    """
    The deletion queue's entry C{deletion_id} is done: its real key's part
    records go too, unless an object still refers to that key.
    """
    row = conn.execute(select(_dq.c.real_key).where(_dq.c.id == deletion_id)).first()
    if row is None:
        return
    referenced = conn.execute(select(_locations.c.real_key).where(_locations.c.real_key == row.real_key).limit(1)).first()
    if referenced is None:
        conn.execute(delete(_object_parts).where(_object_parts.c.real_key == row.real_key))
