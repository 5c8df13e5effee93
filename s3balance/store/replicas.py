"""
SQL for replicas: an object of a bucket with C{replicas: N} has N
locations on N distinct backends (s3balance.ops.replicate).

A PutObject of known length writes every copy at once and commits them
together (objects.commit_object with its other intents).  Every other way
an object gets fewer copies than its bucket wants (a multipart upload, a
copy, async replication, a copy lost or removed) is made up for by copying
from a surviving location to a fresh real key under a write intent and
then L{add_location}: ONE transaction that takes the intent and adds the
location when the object is still the version that was copied (else the
copy is queued for deletion).  L{under_replicated} pages through a bucket
for objects short of copies; L{drop_location} takes a copy found missing
or corrupt off an object that has others.

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Optional

from sqlalchemy import func, insert, literal, select
from sqlalchemy.engine import Connection

from s3balance.store import tables
from s3balance.store.deletion_queue import REASON_ABANDONED, queue_deletion
from s3balance.store.interfaces import Location, ObjectRecord
from s3balance.store.objects import take_intent
from s3balance.store.records import object_record

# What add_location did.
ADDED = "added"
STALE = "stale"
EXPIRED = "expired"

# Why a copy taken off an object is in the deletion queue.
REASON_DROPPED = "dropped"

_o = tables.objects
_loc = tables.object_locations
_parts = tables.object_parts


def _same_version(conn: Connection, record: ObjectRecord) -> Optional[list[Location]]:
    """The locations of C{record}'s object when its row is still that version (locked), else None."""
    current = conn.execute(
        select(_o.c.id, _o.c.etag, _o.c.size).where(_o.c.id == record.id).with_for_update()
    ).first()
    if current is None or current.etag != record.etag or int(current.size) != record.size:
        return None
    return [
        Location(row.backend, row.real_key)
        for row in conn.execute(
            select(_loc.c.backend, _loc.c.real_key).where(_loc.c.object_id == record.id).order_by(_loc.c.id)
        )
    ]


def add_location(
    conn: Connection, intent_id: int, record: ObjectRecord, source: Location, target: Location, now: datetime.datetime
) -> str:
    """
    Take the copy's intent and, when C{record}'s object is still that version
    and still has C{source} (the copy it was read from) and no location on
    C{target.backend}, add C{target} as a location (with the object's part
    records under its real key): 'added'.  Otherwise the copy is no one's
    and is queued for deletion: 'stale'.  The intent gone (its lease ran
    out, the copy is queued already): 'expired'.  The object's row is locked
    first, as a commit or a delete of it locks it before its locations.
    """
    if take_intent(conn, intent_id) is None:
        return EXPIRED
    locations = _same_version(conn, record)
    if (
        locations is None
        or source not in locations
        or any(location.backend == target.backend for location in locations)
    ):
        queue_deletion(conn, target.backend, target.real_key, REASON_ABANDONED, now)
        return STALE
    conn.execute(
        insert(_loc).values(object_id=record.id, backend=target.backend, real_key=target.real_key, created=now)
    )
    # GetObjectAttributes reads a multipart object's parts by the real key of any copy.
    conn.execute(
        insert(_parts).from_select(
            ["real_key", "part_number", "size", "checksums"],
            select(literal(target.real_key, _parts.c.real_key.type), _parts.c.part_number, _parts.c.size, _parts.c.checksums)
            .where(_parts.c.real_key == source.real_key),
        )
    )
    return ADDED


def drop_location(
    conn: Connection, record: ObjectRecord, location: Location, now: datetime.datetime
) -> bool:
    """
    Take C{location} off C{record}'s object and queue its copy for deletion,
    when the object is still that version and has another location: a last
    copy is never dropped.  -> whether it was.
    """
    locations = _same_version(conn, record)
    if locations is None or location not in locations or len(locations) < 2:
        return False
    conn.execute(
        _loc.delete().where(
            _loc.c.object_id == record.id,
            _loc.c.backend == location.backend,
            _loc.c.real_key == location.real_key,
        )
    )
    queue_deletion(conn, location.backend, location.real_key, REASON_DROPPED, now)
    return True


def under_replicated(
    conn: Connection,
    bucket: str,
    replicas: int,
    after: int,
    limit: int,
    backends: Optional[Sequence[str]] = None,
) -> tuple[list[ObjectRecord], int]:
    """
    Objects of C{bucket} after object id C{after} with fewer than
    C{replicas} locations (counting only those on C{backends}, when given),
    each with all its locations, from a page of at most C{limit} objects;
    and the last object id the page looked at (the cursor of the next page;
    C{after} itself at the end).
    """
    page = conn.execute(
        # (Delete markers have no bytes: nothing to copy.)
        select(_o.c.id)
        .where(_o.c.bucket == bucket, _o.c.id > after, _o.c.delete_marker == 0)
        .order_by(_o.c.id)
        .limit(limit)
    ).all()
    if not page:
        return [], after
    ids = [int(row.id) for row in page]
    counts = {
        int(row.object_id): int(row.n)
        for row in conn.execute(
            select(_loc.c.object_id, func.count().label("n"))
            .where(_loc.c.object_id.in_(ids), *(() if backends is None else (_loc.c.backend.in_(list(backends)),)))
            .group_by(_loc.c.object_id)
        )
    }
    short = [object_id for object_id in ids if counts.get(object_id, 0) < replicas]
    if not short:
        return [], ids[-1]
    locations: dict[int, list[Location]] = {}
    for loc in conn.execute(
        select(_loc.c.object_id, _loc.c.backend, _loc.c.real_key).where(_loc.c.object_id.in_(short)).order_by(_loc.c.id)
    ):
        locations.setdefault(int(loc.object_id), []).append(Location(loc.backend, loc.real_key))
    records = [
        object_record(row, tuple(locations.get(int(row.id), ())))
        for row in conn.execute(select(_o).where(_o.c.id.in_(short)).order_by(_o.c.id))
    ]
    return records, ids[-1]
