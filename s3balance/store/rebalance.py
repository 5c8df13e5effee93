"""
SQL for the cluster's rebalance (L{s3balance.ops.rebalance}): objects moved
from the fullest backends to the emptiest until every backend's used
fraction is within a margin.

The rebalance is at most one row of C{rebalances} (id 1): its state
(running, paused, done, cancelled), margin, rate limit and what moved.  A
new start replaces a finished row.  The elected mover pages the fullest
backend's locations with L{s3balance.store.moves.drain_candidates}, copies
an object under a write intent and then L{rebalance_switch}: the drain's
L{s3balance.store.moves.switch_location} (it counts in the source's drain
row only when one exists: drained backends do not take part, unless a drain
began during the copy) plus the move counted in this row, in ONE
transaction.

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

from sqlalchemy import case, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from s3balance.store import moves, tables
from s3balance.store.deletion_queue import NO_GRACE
from s3balance.store.interfaces import (
    ConcurrentInsert,
    Location,
    MoveCandidate,
    RebalanceRecord,
    RebalanceStateError,
)

# A rebalance's states.
RUNNING = "running"
PAUSED = "paused"
DONE = "done"
CANCELLED = "cancelled"
UNDER_WAY = (RUNNING, PAUSED)
STATES = (RUNNING, PAUSED, DONE, CANCELLED)

# The one row's id.
ROW = 1
PPM = 1_000_000

_rb = tables.rebalances


def to_ppm(fraction: float) -> int:
    return round(fraction * PPM)


def rebalance_record(row: Row) -> RebalanceRecord:
    return RebalanceRecord(
        state=row.state,
        margin=int(row.margin_ppm) / PPM,
        rate=None if row.rate is None else int(row.rate),
        started=row.started,
        updated=row.updated,
        finished=row.finished,
        moved_objects=int(row.moved_objects),
        moved_bytes=int(row.moved_bytes),
        failed_objects=int(row.failed_objects),
        active_seconds=int(row.active_ms) / 1000,
        spread=None if row.spread_ppm is None else int(row.spread_ppm) / PPM,
        remaining_bytes=int(row.remaining_bytes),
        last_error=row.last_error,
    )


def _row(conn: Connection, lock: bool = False) -> Optional[Row]:
    query = select(_rb).where(_rb.c.id == ROW)
    return conn.execute(query.with_for_update() if lock else query).first()


def get_rebalance(conn: Connection) -> Optional[RebalanceRecord]:
    row = _row(conn)
    return rebalance_record(row) if row is not None else None


def _current(conn: Connection) -> RebalanceRecord:
    found = get_rebalance(conn)
    assert found is not None
    return found


def start_rebalance(
    conn: Connection, margin: float, rate: Optional[int], now: datetime.datetime
) -> RebalanceRecord:
    """A new rebalance, or the one under way with C{margin} (and C{rate}, when given) set; its state is kept."""
    row = _row(conn, lock=True)
    if row is not None and row.state in UNDER_WAY:
        values: dict[str, Any] = {"margin_ppm": to_ppm(margin), "updated": now}
        if rate is not None:
            values["rate"] = rate
        conn.execute(update(_rb).where(_rb.c.id == ROW).values(**values))
        return _current(conn)
    values = {
        "state": RUNNING,
        "margin_ppm": to_ppm(margin),
        "rate": rate,
        "started": now,
        "updated": now,
        "finished": None,
        "moved_objects": 0,
        "moved_bytes": 0,
        "failed_objects": 0,
        "active_ms": 0,
        "spread_ppm": None,
        "remaining_bytes": 0,
        "last_error": None,
    }
    if row is None:
        try:
            conn.execute(insert(_rb).values(id=ROW, **values))
        except IntegrityError as e:
            # Started by another daemon meanwhile: the transaction runs again and finds it.
            raise ConcurrentInsert("rebalance") from e
    else:
        conn.execute(update(_rb).where(_rb.c.id == ROW).values(**values))
    return _current(conn)


def set_rebalance_state(
    conn: Connection, state: str, rate: Optional[int], now: datetime.datetime
) -> Optional[RebalanceRecord]:
    """Pause ('paused') or resume ('running') the rebalance under way (its rate set when given)."""
    if state not in UNDER_WAY:
        raise ValueError(f"a rebalance is paused or resumed, not set to {state!r}")
    row = _row(conn, lock=True)
    if row is None:
        return None
    if row.state not in UNDER_WAY:
        raise RebalanceStateError(f"the rebalance is {row.state}")
    values: dict[str, Any] = {"state": state, "updated": now}
    if rate is not None:
        values["rate"] = rate
    conn.execute(update(_rb).where(_rb.c.id == ROW).values(**values))
    return _current(conn)


def cancel_rebalance(conn: Connection, now: datetime.datetime) -> Optional[RebalanceRecord]:
    """The rebalance under way becomes 'cancelled' (what moved stays moved)."""
    row = _row(conn, lock=True)
    if row is None:
        return None
    if row.state not in UNDER_WAY:
        raise RebalanceStateError(f"the rebalance is {row.state}")
    conn.execute(update(_rb).where(_rb.c.id == ROW).values(state=CANCELLED, updated=now, finished=now))
    return _current(conn)


def note_rebalance_progress(
    conn: Connection,
    active_ms: int,
    failed: int,
    error: Optional[str],
    spread: Optional[float],
    remaining_bytes: Optional[int],
    finished: bool,
    now: datetime.datetime,
) -> Optional[RebalanceRecord]:
    """
    Add time spent moving and failed moves; C{error} (not None) becomes the
    last error ("" clears it); the mover's measure when given; with
    C{finished}, a running rebalance is done.
    """
    row = _row(conn, lock=True)
    if row is None:
        return None
    values: dict[str, Any] = {
        "active_ms": _rb.c.active_ms + active_ms,
        "failed_objects": _rb.c.failed_objects + failed,
        "updated": now,
    }
    if error is not None:
        values["last_error"] = error[: moves.MAX_ERROR] or None
    if spread is not None:
        values["spread_ppm"] = to_ppm(spread)
    if remaining_bytes is not None:
        values["remaining_bytes"] = max(0, remaining_bytes)
    if finished and row.state == RUNNING:
        values.update(state=DONE, finished=now, remaining_bytes=0)
    conn.execute(update(_rb).where(_rb.c.id == ROW).values(**values))
    return _current(conn)


def rebalance_switch(
    conn: Connection,
    intent_id: int,
    candidate: MoveCandidate,
    target: Location,
    now: datetime.datetime,
    grace: datetime.timedelta = NO_GRACE,
) -> str:
    """L{moves.switch_location}, and a move counted in the rebalance's row, in one transaction."""
    outcome = moves.switch_location(conn, intent_id, candidate, target, now, grace)
    if outcome == moves.MOVED:
        size = candidate.record.size
        conn.execute(
            update(_rb)
            .where(_rb.c.id == ROW)
            .values(
                moved_objects=_rb.c.moved_objects + 1,
                moved_bytes=_rb.c.moved_bytes + size,
                remaining_bytes=case((_rb.c.remaining_bytes > size, _rb.c.remaining_bytes - size), else_=0),
                updated=now,
            )
        )
    return outcome
