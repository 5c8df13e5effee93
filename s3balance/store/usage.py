"""SQL for backend usage (an aggregate of locations) and monthly operation counters."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from s3balance.store import tables
from s3balance.store.interfaces import BackendUsage, OperationCounts

_o = tables.objects
_loc = tables.object_locations
_ops = tables.backend_operations


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
