"""
SQL for drains: emptying a backend onto the others (L{s3balance.ops.drain}).

A drain is one row of C{backend_drains}.  While it exists (draining, paused
or done) no daemon places new objects on its backend.  The elected mover
walks the backend's locations (L{drain_candidates}, a pass in location id
order), copies each object to a fresh real key on another backend under a
write intent, and then L{switch_location}: ONE transaction that takes the
intent, replaces the location when the object still has it (else the new
copy is queued for deletion: an object overwritten or deleted meanwhile
keeps its newer state), queues the old copy for deletion after the
deletion grace and counts the move in the drain's row.  At the end of each
pass L{recount_drain} counts what is left; with no location, write in
flight, open multipart upload or queued deletion left on the backend, the
drain is done and the backend may be removed from the configuration.  A
pass that could move nothing but objects no other backend can hold another
copy of (C{replicas: 2} on two backends) leaves the drain C{blocked}: its
copies are never dropped; a pass after a backend is added moves them.

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, Optional

from sqlalchemy import case, delete, exists, func, insert, literal, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from s3balance.store import tables
from s3balance.store.deletion_queue import NO_GRACE, REASON_ABANDONED, queue_deletion
from s3balance.store.interfaces import (
    ConcurrentInsert,
    DrainRecord,
    DrainStateError,
    Location,
    MoveCandidate,
)
from s3balance.store.objects import take_intent
from s3balance.store.records import object_record

# A drain's states.
DRAINING = "draining"
PAUSED = "paused"
DONE = "done"
# Only objects that no other backend can hold another copy of are left.
BLOCKED = "blocked"
UNDER_WAY = (DRAINING, PAUSED, BLOCKED)
# What a pass may run on.
MOVING = (DRAINING, BLOCKED)
# Why an object is blocked (the admin API, the CLI, /status).
BLOCKED_REASON = "no other backend can hold another copy of this object"

# Why a drained backend's copy is in the deletion queue.
REASON_DRAINED = "drained"

# What switch_location did.
MOVED = "moved"
STALE = "stale"
EXPIRED = "expired"

# The longest last_error kept (the column's size).
MAX_ERROR = 1024

_bd = tables.backend_drains
_o = tables.objects
_loc = tables.object_locations
_wi = tables.write_intents
_mp = tables.multipart_uploads
_dq = tables.deletion_queue
_parts = tables.object_parts

_COUNTERS = (
    "moved_objects",
    "moved_bytes",
    "pending_writes",
    "pending_uploads",
    "pending_deletions",
    "failed_objects",
    "active_ms",
    "blocked_objects",
)


def drain_record(row: Row) -> DrainRecord:
    return DrainRecord(
        backend=row.backend,
        state=row.state,
        rate=None if row.rate is None else int(row.rate),
        started=row.started,
        updated=row.updated,
        finished=row.finished,
        total_objects=int(row.total_objects),
        total_bytes=int(row.total_bytes),
        moved_objects=int(row.moved_objects),
        moved_bytes=int(row.moved_bytes),
        remaining_objects=int(row.remaining_objects),
        remaining_bytes=int(row.remaining_bytes),
        pending_writes=int(row.pending_writes),
        pending_uploads=int(row.pending_uploads),
        pending_deletions=int(row.pending_deletions),
        failed_objects=int(row.failed_objects),
        active_seconds=int(row.active_ms) / 1000,
        last_error=row.last_error,
        blocked_objects=int(row.blocked_objects),
    )


def _row(conn: Connection, backend: str, lock: bool = False) -> Optional[Row]:
    query = select(_bd).where(_bd.c.backend == backend)
    return conn.execute(query.with_for_update() if lock else query).first()


def get_drain(conn: Connection, backend: str) -> Optional[DrainRecord]:
    row = _row(conn, backend)
    return drain_record(row) if row is not None else None


def drains(conn: Connection) -> list[DrainRecord]:
    return [drain_record(row) for row in conn.execute(select(_bd).order_by(_bd.c.backend))]


def _held(conn: Connection, backend: str) -> tuple[int, int]:
    """(objects, bytes) with a location on C{backend} (the locations' backend index)."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(_o.c.size), 0))
        .select_from(_loc.join(_o, _loc.c.object_id == _o.c.id))
        .where(_loc.c.backend == backend)
    ).first()
    assert row is not None  # (an aggregate: one row)
    return int(row[0]), int(row[1])


def start_drain(conn: Connection, backend: str, rate: Optional[int], now: datetime.datetime) -> DrainRecord:
    """A new drain of C{backend}, or the one under way (its rate set when C{rate} is given)."""
    row = _row(conn, backend, lock=True)
    if row is not None and row.state in UNDER_WAY:
        if rate is not None:
            conn.execute(update(_bd).where(_bd.c.backend == backend).values(rate=rate, updated=now))
        found = get_drain(conn, backend)
        assert found is not None
        return found
    objects, size = _held(conn, backend)
    values: dict[str, Any] = {
        "state": DRAINING,
        "rate": rate,
        "started": now,
        "updated": now,
        "finished": None,
        "total_objects": objects,
        "total_bytes": size,
        "remaining_objects": objects,
        "remaining_bytes": size,
        "last_error": None,
        **dict.fromkeys(_COUNTERS, 0),
    }
    if row is None:
        try:
            conn.execute(insert(_bd).values(backend=backend, **values))
        except IntegrityError as e:
            # Started by another daemon meanwhile: the transaction runs again and finds it.
            raise ConcurrentInsert(backend) from e
    else:
        conn.execute(update(_bd).where(_bd.c.backend == backend).values(**values))
    started = get_drain(conn, backend)
    assert started is not None
    return started


def set_drain_state(conn: Connection, backend: str, state: str, now: datetime.datetime) -> Optional[DrainRecord]:
    """
    Pause (C{state} 'paused') or resume ('draining') a drain under way
    (draining, paused or blocked); DrainStateError when it is done.
    """
    if state not in (DRAINING, PAUSED):
        raise ValueError(f"a drain is paused or resumed, not set to {state!r}")
    row = _row(conn, backend, lock=True)
    if row is None:
        return None
    if row.state not in UNDER_WAY:
        raise DrainStateError(f"the drain of {backend} is {row.state}")
    if row.state != state:
        conn.execute(update(_bd).where(_bd.c.backend == backend).values(state=state, updated=now))
    return get_drain(conn, backend)


def set_drain_rate(
    conn: Connection, backend: str, rate: Optional[int], now: datetime.datetime
) -> Optional[DrainRecord]:
    conn.execute(update(_bd).where(_bd.c.backend == backend).values(rate=rate, updated=now))
    return get_drain(conn, backend)


def cancel_drain(conn: Connection, backend: str) -> Optional[DrainRecord]:
    removed = get_drain(conn, backend)
    if removed is not None:
        conn.execute(delete(_bd).where(_bd.c.backend == backend))
    return removed


def drain_candidates(conn: Connection, backend: str, after: int, limit: int) -> list[MoveCandidate]:
    """
    The next C{limit} locations on C{backend} after location id C{after},
    with their objects (each with all its locations).  On SQLite and InnoDB
    the backend index is ordered by id within a backend; PostgreSQL walks
    the primary key, filtering by backend.
    """
    page = conn.execute(
        select(_loc.c.id, _loc.c.object_id, _loc.c.real_key)
        .where(_loc.c.backend == backend, _loc.c.id > after)
        .order_by(_loc.c.id)
        .limit(limit)
    ).all()
    if not page:
        return []
    ids = sorted({row.object_id for row in page})
    rows = {row.id: row for row in conn.execute(select(_o).where(_o.c.id.in_(ids)))}
    locations: dict[int, list[Location]] = {}
    for loc in conn.execute(
        select(_loc.c.object_id, _loc.c.backend, _loc.c.real_key)
        .where(_loc.c.object_id.in_(ids))
        .order_by(_loc.c.id)
    ):
        locations.setdefault(loc.object_id, []).append(Location(loc.backend, loc.real_key))
    candidates = []
    for row in page:
        found = rows.get(row.object_id)
        if found is None:
            continue  # deleted between the two statements (READ COMMITTED)
        record = object_record(found, tuple(locations.get(row.object_id, ())))
        candidates.append(MoveCandidate(cursor=int(row.id), record=record, source=Location(backend, row.real_key)))
    return candidates


def switch_location(
    conn: Connection,
    intent_id: int,
    candidate: MoveCandidate,
    target: Location,
    now: datetime.datetime,
    grace: datetime.timedelta = NO_GRACE,
) -> str:
    """
    Take the copy's intent and, when the object still has the source
    location, point that location at C{target} (see
    L{s3balance.store.interfaces.IMetadataStore.switch_location}).  The
    object's row is locked first, as a commit or a delete of it locks it
    before its locations, so they take turns.
    """
    if take_intent(conn, intent_id) is None:
        return EXPIRED
    source = candidate.source
    current = conn.execute(
        select(_o.c.id, _o.c.size).where(_o.c.id == candidate.record.id).with_for_update()
    ).first()
    switched = 0
    if current is not None:
        switched = conn.execute(
            update(_loc)
            .where(
                _loc.c.object_id == current.id,
                _loc.c.backend == source.backend,
                _loc.c.real_key == source.real_key,
            )
            .values(backend=target.backend, real_key=target.real_key, created=now)
        ).rowcount
    if current is None or not switched:
        # Overwritten or deleted since the copy began: its copy is no one's.
        queue_deletion(conn, target.backend, target.real_key, REASON_ABANDONED, now)
        return STALE
    queue_deletion(conn, source.backend, source.real_key, REASON_DRAINED, now, grace=grace)
    # GetObjectAttributes reads a multipart object's parts by its real key.
    conn.execute(
        insert(_parts).from_select(
            ["real_key", "part_number", "size", "checksums"],
            select(literal(target.real_key, _parts.c.real_key.type), _parts.c.part_number, _parts.c.size, _parts.c.checksums)
            .where(_parts.c.real_key == source.real_key),
        )
    )
    size = int(current.size)
    conn.execute(
        update(_bd)
        .where(_bd.c.backend == source.backend)
        .values(
            moved_objects=_bd.c.moved_objects + 1,
            moved_bytes=_bd.c.moved_bytes + size,
            remaining_objects=case((_bd.c.remaining_objects > 1, _bd.c.remaining_objects - 1), else_=0),
            remaining_bytes=case((_bd.c.remaining_bytes > size, _bd.c.remaining_bytes - size), else_=0),
            updated=now,
        )
    )
    return MOVED


def _count(conn: Connection, table: Any, backend: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(table.c.backend == backend)).scalar() or 0)


def recount_drain(
    conn: Connection, backend: str, now: datetime.datetime, blocked: Optional[int] = None
) -> Optional[DrainRecord]:
    """
    What is left on a drained backend, into its drain's row; done when
    nothing is.  At the end of a pass C{blocked} is the number of objects it
    left because no other backend can hold another copy of them: when they
    are all that is left (no write or multipart upload in flight either),
    the drain is C{blocked}; a blocked drain with more left is draining again.
    """
    row = _row(conn, backend, lock=True)
    if row is None:
        return None
    objects, size = _held(conn, backend)
    values: dict[str, Any] = {
        "remaining_objects": objects,
        "remaining_bytes": size,
        "pending_writes": _count(conn, _wi, backend),
        "pending_uploads": _count(conn, _mp, backend),
        "pending_deletions": _count(conn, _dq, backend),
        "updated": now,
    }
    values.update(next_state(row.state, objects, values, blocked, now))
    conn.execute(update(_bd).where(_bd.c.backend == backend).values(**values))
    return get_drain(conn, backend)


def next_state(
    state: str, objects: int, counts: dict[str, Any], blocked: Optional[int], now: datetime.datetime
) -> dict[str, Any]:
    """The changes a recount makes to a drain in C{state} (the fake store's too)."""
    changes: dict[str, Any] = {}
    if blocked is not None:
        changes["blocked_objects"] = blocked = min(blocked, objects)
    in_flight = counts["pending_writes"] + counts["pending_uploads"]
    if state in MOVING and not (objects + in_flight + counts["pending_deletions"]):
        changes.update(state=DONE, finished=now, last_error=None, blocked_objects=0)
    elif blocked is not None and state in MOVING:
        if objects and blocked >= objects and not in_flight:
            changes["state"] = BLOCKED
        elif state == BLOCKED:
            changes["state"] = DRAINING
    return changes


def note_drain_progress(
    conn: Connection, backend: str, active_ms: int, failed: int, error: Optional[str], now: datetime.datetime
) -> None:
    values: dict[str, Any] = {
        "active_ms": _bd.c.active_ms + active_ms,
        "failed_objects": _bd.c.failed_objects + failed,
        "updated": now,
    }
    if error is not None:
        values["last_error"] = error[:MAX_ERROR] or None
    conn.execute(update(_bd).where(_bd.c.backend == backend).values(**values))


def backends_in_use(conn: Connection, names: Sequence[str]) -> list[str]:
    """Those of C{names} that a location refers to (one EXISTS on the backend index each)."""
    return [
        name
        for name in sorted(set(names))
        if conn.execute(select(exists().where(_loc.c.backend == name))).scalar()
    ]


def location_backends(conn: Connection) -> list[str]:
    """
    Every backend that a location refers to, by a loose scan of the
    locations' backend index: one MIN() seek per backend, however many
    objects each holds.
    """
    found: list[str] = []
    while True:
        query = select(func.min(_loc.c.backend))
        if found:
            query = query.where(_loc.c.backend > found[-1])
        name = conn.execute(query).scalar()
        if name is None:
            return found
        found.append(name)


def unconfigured_backends_in_use(conn: Connection, configured: Sequence[str]) -> list[str]:
    """Backends that are not in C{configured} but that objects are stored on (a start-up check)."""
    return [name for name in location_backends(conn) if name not in set(configured)]


def unconfigured_backends_in_use_at(url: str, configured: Sequence[str]) -> list[str]:
    """Blocking (a daemon's start, before the reactor runs): L{unconfigured_backends_in_use} on the database at C{url}."""
    from sqlalchemy import create_engine, pool

    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return unconfigured_backends_in_use(conn, configured)
    finally:
        engine.dispose()


def removed_backend_message(name: str) -> str:
    """The one-line refusal of a configuration without a backend that objects are still stored on."""
    return (
        f"buckets: backend {name!r} is not in the configuration, but objects are stored on it: "
        f"keep it configured, drain it first (s3balance-admin drain {name}), then remove it"
    )
