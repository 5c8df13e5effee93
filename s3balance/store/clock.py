"""
The database server's clock as an SQL expression (L{database_time}),
compiled per dialect: write-intent and job leases are set and judged by it,
never by a daemon's clock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from s3balance.store import tables


class database_time(FunctionElement):
    """
    The database server's current UTC time, or that plus a number of
    milliseconds (an SQL expression, normally a bound parameter):
    C{database_time()}, C{database_time(bindparam("lease_ms"))}.

    Write-intent leases are set and judged by this clock, never by a
    daemon's: daemons whose clocks disagree (or one whose clock jumps) still
    agree on when an upload's lease runs out.  Comparable with, and storable
    in, a L{tables.UTCDateTime} column on every engine.
    """

    type = tables.UTCDateTime()
    inherit_cache = True
    name = "database_time"


def _offset_ms(element: database_time, compiler: SQLCompiler, **kw: Any) -> str | None:
    clauses = list(element.clauses)
    return compiler.process(clauses[0], **kw) if clauses else None


@compiles(database_time, "sqlite")
def _sqlite_time(element: database_time, compiler: SQLCompiler, **kw: Any) -> str:
    # The text SQLAlchemy stores a naive UTC datetime as (six fractional
    # digits), so stored and computed times compare as strings in time order.
    # 'now' is the same throughout one statement.
    offset = _offset_ms(element, compiler, **kw)
    modifier = f", printf('%+.3f seconds', {offset} / 1000.0)" if offset is not None else ""
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now'{modifier})"


@compiles(database_time)  # also str(statement), as in logs and tests
@compiles(database_time, "postgresql")
def _postgresql_time(element: database_time, compiler: SQLCompiler, **kw: Any) -> str:
    # now(): the transaction's start, a moment earlier than the statement.
    offset = _offset_ms(element, compiler, **kw)
    return "now()" if offset is None else f"(now() + make_interval(secs => {offset} / 1000.0))"


@compiles(database_time, "mysql")
@compiles(database_time, "mariadb")
def _mysql_time(element: database_time, compiler: SQLCompiler, **kw: Any) -> str:
    # DATETIME columns hold naive UTC here (tables.UTCDateTime); UTC_TIMESTAMP
    # does not depend on the session's time zone.
    offset = _offset_ms(element, compiler, **kw)
    now = "UTC_TIMESTAMP(6)"
    return now if offset is None else f"TIMESTAMPADD(MICROSECOND, {offset} * 1000, {now})"


def lease_ms(seconds: float) -> int:
    """A lease length as the whole milliseconds L{database_time} adds."""
    return int(round(seconds * 1000))
