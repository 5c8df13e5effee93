"""
SQL for paused background jobs (C{job_pauses}, migration 0011): a row per
cluster-wide job an operator paused (L{s3balance.ops.pauses}).  Pausing is
an insert that a row already there makes a no-op (so two daemons pausing at
once agree, and the first pause's time and reason stay); resuming deletes it.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

from sqlalchemy import delete, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from s3balance.store import tables
from s3balance.store.interfaces import JobPause

_jp = tables.job_pauses

# The columns' widths (tables.job_pauses): longer texts are cut, not refused.
JOB_LENGTH = 64
TEXT_LENGTH = 255


def clip(text: Optional[str]) -> Optional[str]:
    return text[:TEXT_LENGTH] if text else None


def pause_job(
    conn: Connection, job: str, paused_by: Optional[str], reason: Optional[str], now: datetime.datetime
) -> JobPause:
    """Pause C{job} unless it is paused already; -> its row as it is now."""
    values = {"job": job, "paused_at": now, "paused_by": clip(paused_by), "reason": clip(reason)}
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        conn.execute(mysql.insert(_jp).values(**values).prefix_with("IGNORE"))
    else:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        conn.execute(insert(_jp).values(**values).on_conflict_do_nothing(index_elements=[_jp.c.job]))
    row = conn.execute(select(_jp).where(_jp.c.job == job)).one()
    return _record(row)


def resume_job(conn: Connection, job: str) -> bool:
    """Resume C{job}; True when it was paused."""
    return bool(conn.execute(delete(_jp).where(_jp.c.job == job)).rowcount)


def paused_jobs(conn: Connection) -> list[JobPause]:
    """Every paused job, by name."""
    return [_record(row) for row in conn.execute(select(_jp).order_by(_jp.c.job))]


def _record(row: Row[Any]) -> JobPause:
    return JobPause(job=row.job, paused_at=row.paused_at, paused_by=row.paused_by, reason=row.reason)
