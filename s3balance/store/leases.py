"""
SQL for job leases: which daemon of a cluster runs a cluster-wide job.

A lease is one row of C{job_leases} (job, holder, expires_at).  Every time in
it comes from the database's own clock (L{db_now}), never from a daemon's,
so daemons whose clocks disagree still agree on who holds a job: taking a
lease is one UPDATE that succeeds only when the row is expired or already
ours, and an INSERT (that may lose a race to another daemon's) on the job's
first use.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import BigInteger, bindparam, delete, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from s3balance.store import tables
from s3balance.store.clock import database_time, lease_ms
from s3balance.store.interfaces import LeaseState

_jl = tables.job_leases



def db_now(offset_seconds: float = 0.0) -> ColumnElement:
    """The database's current UTC time plus C{offset_seconds} (L{clock.database_time}, shared with write intents)."""
    if not offset_seconds:
        return database_time()
    return database_time(bindparam("lease_ms", lease_ms(offset_seconds), type_=BigInteger()))


def acquire_lease(conn: Connection, job: str, holder: str, seconds: float) -> bool:
    """
    Take or renew C{job}'s lease for C{holder} until the database's now plus
    C{seconds}.  True when C{holder} holds it now; False when another holder's
    lease has not expired.
    """
    now = db_now()
    taken = conn.execute(
        update(_jl)
        .where(_jl.c.job == job, (_jl.c.expires_at < now) | (_jl.c.holder == holder))
        .values(holder=holder, expires_at=db_now(seconds))
    )
    if taken.rowcount == 1:
        return True
    values = {"job": job, "holder": holder, "expires_at": db_now(seconds)}
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        inserted = conn.execute(mysql.insert(_jl).values(**values).prefix_with("IGNORE"))
    else:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # A row that exists (another holder's, live) or that another daemon
        # inserted first makes this a no-op, not an error that would end the
        # transaction on PostgreSQL.
        inserted = conn.execute(insert(_jl).values(**values).on_conflict_do_nothing(index_elements=[_jl.c.job]))
    return inserted.rowcount == 1


def release_lease(conn: Connection, job: str, holder: str) -> bool:
    """Give C{job}'s lease up, if C{holder} holds it; True when it did."""
    return bool(conn.execute(delete(_jl).where(_jl.c.job == job, _jl.c.holder == holder)).rowcount)


def lease_state(conn: Connection, job: str) -> Optional[LeaseState]:
    """C{job}'s lease row, or None when no daemon ever took it (or the last one gave it up)."""
    row = conn.execute(
        select(_jl.c.holder, (_jl.c.expires_at > db_now()).label("live")).where(_jl.c.job == job)
    ).first()
    if row is None:
        return None
    return LeaseState(job=job, holder=row.holder, live=bool(row.live))
