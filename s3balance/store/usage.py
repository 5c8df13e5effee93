"""
SQL for backend usage and monthly operation counters.

Usage per backend lives in C{backend_usage}: each daemon adds what its own
writes and deletes changed (L{add_backend_usage}, a few rows every few
seconds), and one daemon of the cluster now and then replaces the rows with
the aggregate of the locations (L{reconcile_backend_usage}, a join over every
location: rare, elected).  L{backend_usage} is that aggregate, read directly.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from s3balance.store import tables
from s3balance.store.interfaces import BackendUsage, OperationCounts

_o = tables.objects
_loc = tables.object_locations
_ops = tables.backend_operations
_bu = tables.backend_usage


def backend_usage(conn: Connection) -> list[BackendUsage]:
    query = (
        select(_loc.c.backend, func.coalesce(func.sum(_o.c.size), 0), func.count())
        .select_from(_loc.join(_o, _loc.c.object_id == _o.c.id))
        .group_by(_loc.c.backend)
        .order_by(_loc.c.backend)
    )
    return [
        BackendUsage(backend=backend, used_bytes=int(used), object_count=int(count))
        for backend, used, count in conn.execute(query)
    ]


def _usage_rows(rows: Iterable[Row]) -> list[BackendUsage]:
    return [
        BackendUsage(backend=backend, used_bytes=int(used), object_count=int(count)) for backend, used, count in rows
    ]


def stored_backend_usage(conn: Connection) -> list[BackendUsage]:
    """The C{backend_usage} rows, by backend (one small read, whatever the number of objects)."""
    return _usage_rows(conn.execute(select(_bu.c.backend, _bu.c.used_bytes, _bu.c.object_count).order_by(_bu.c.backend)))


def add_backend_usage(conn: Connection, deltas: dict[str, tuple[int, int]]) -> list[BackendUsage]:
    """
    Add C{deltas} (backend -> (bytes, objects)) to C{backend_usage}, each an
    upsert so concurrent daemons add up, and return every row afterwards.
    """
    for backend, (delta_bytes, delta_objects) in sorted(deltas.items()):
        if not delta_bytes and not delta_objects:
            continue
        values = {"backend": backend, "used_bytes": delta_bytes, "object_count": delta_objects}
        dialect = conn.dialect.name
        if dialect in ("mysql", "mariadb"):
            on_mysql = mysql.insert(_bu).values(**values)
            conn.execute(
                on_mysql.on_duplicate_key_update(
                    used_bytes=_bu.c.used_bytes + on_mysql.inserted.used_bytes,
                    object_count=_bu.c.object_count + on_mysql.inserted.object_count,
                )
            )
            continue
        upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_bu).values(**values)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[_bu.c.backend],
                set_={
                    "used_bytes": _bu.c.used_bytes + upsert.excluded.used_bytes,
                    "object_count": _bu.c.object_count + upsert.excluded.object_count,
                },
            )
        )
    return stored_backend_usage(conn)


def reconcile_backend_usage(conn: Connection) -> list[BackendUsage]:
    """Replace C{backend_usage} with the aggregate of the locations; -> the new rows."""
    truth = backend_usage(conn)
    conn.execute(delete(_bu))
    if truth:
        conn.execute(
            insert(_bu),
            [{"backend": u.backend, "used_bytes": u.used_bytes, "object_count": u.object_count} for u in truth],
        )
    return truth


def count_operations(conn: Connection, backend: str, month: str, type_a: int, type_b: int) -> None:
    """One upsert, so concurrent daemons add up instead of overwriting."""
    values = {"backend": backend, "month": month, "type_a": type_a, "type_b": type_b}
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        on_mysql = mysql.insert(_ops).values(**values)
        conn.execute(
            on_mysql.on_duplicate_key_update(
                type_a=_ops.c.type_a + on_mysql.inserted.type_a,
                type_b=_ops.c.type_b + on_mysql.inserted.type_b,
            )
        )
        return
    upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_ops).values(**values)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[_ops.c.backend, _ops.c.month],
            set_={
                "type_a": _ops.c.type_a + upsert.excluded.type_a,
                "type_b": _ops.c.type_b + upsert.excluded.type_b,
            },
        )
    )


def operation_counts(conn: Connection, month: str) -> list[OperationCounts]:
    rows = conn.execute(select(_ops).where(_ops.c.month == month).order_by(_ops.c.backend))
    return [
        OperationCounts(backend=r.backend, month=r.month, type_a=int(r.type_a), type_b=int(r.type_b))
        for r in rows
    ]
