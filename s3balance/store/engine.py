"""
Per-dialect engine settings (strict SQL mode, statement timeouts, SQLite
pragmas) and how a driver error is classified (retryable, timeout).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

_PG_RETRY_CODES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_MYSQL_RETRY_CODES = {1205, 1213}  # lock wait timeout, deadlock


def _positional_dialect(url: URL) -> Dialect:
    """
    The dialect of C{url} with a positional parameter style ("format", %s),
    for statements compiled once and run on a DBAPI connection
    (L{RawConnection} needs the parameters' order).  Not connected: what it
    compiles must not depend on the server's version.
    """
    return create_engine(url, poolclass=NullPool, paramstyle="format").dialect


def is_retryable(error: DBAPIError) -> bool:
    """True when running the same transaction again may well succeed."""
    if error.connection_invalidated:
        return True
    orig = error.orig
    if getattr(orig, "pgcode", None) in _PG_RETRY_CODES:
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in _MYSQL_RETRY_CODES:
        return True
    return "database is locked" in str(orig)


def _configure_mysql(engine: Engine, statement_timeout: float) -> None:
    """
    Strict mode on every MariaDB/MySQL session, whatever the server's
    default: a value a column cannot hold (a key over 1024 bytes, a long
    Content-Type) is an error, never cut short and acknowledged
    (s3balance.s3.limits refuses those before the upload; this is the
    backstop).  The server's other sql_mode flags are kept.  And the
    statement timeout: MariaDB's max_statement_time (seconds), MySQL's
    max_execution_time (milliseconds, SELECTs only); lock waits end then too.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')")
        if statement_timeout:
            cursor.execute("SELECT VERSION()")
            version = str(cursor.fetchone()[0])
            if "mariadb" in version.lower():
                cursor.execute(f"SET SESSION max_statement_time = {float(statement_timeout):.3f}")
            else:
                cursor.execute(f"SET SESSION max_execution_time = {round(statement_timeout * 1000)}")
            # Row locks, and table (metadata) locks, which max_statement_time does not end.
            lock_wait = max(1, math.ceil(statement_timeout))
            cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {lock_wait}, lock_wait_timeout = {lock_wait}")
        cursor.close()


def _configure_postgres(engine: Engine, statement_timeout: float) -> None:
    """The statement timeout on every PostgreSQL session (it bounds lock waits too)."""
    if not statement_timeout:
        return

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET statement_timeout = {max(1, round(statement_timeout * 1000))}")
        cursor.close()
        dbapi_connection.commit()


def _lift_statement_timeout(conn: Connection) -> None:
    """No statement timeout for the rest of this transaction (PostgreSQL) or session (MariaDB/MySQL: migrations)."""
    name = conn.dialect.name
    if name == "postgresql":
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
    elif name in ("mysql", "mariadb"):
        if getattr(conn.dialect, "is_mariadb", False):
            conn.exec_driver_sql("SET SESSION max_statement_time = 0")
        else:
            conn.exec_driver_sql("SET SESSION max_execution_time = 0")


def _is_timeout(error: DBAPIError) -> bool:
    """The server ended the statement for its time (or a lock wait's)."""
    orig = error.orig
    if getattr(orig, "pgcode", None) in ("57014", "55P03"):  # query_canceled, lock_not_available
        return True
    args: tuple = tuple(getattr(orig, "args", ()))
    # MariaDB max_statement_time, MySQL max_execution_time, a table lock's lock_wait_timeout.
    return bool(args) and args[0] in (1969, 3024, 1205)


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    """
    WAL, a busy timeout and foreign keys on every connection; and transactions
    begun explicitly, so writes take the write lock up front (BEGIN IMMEDIATE)
    instead of failing to upgrade a read lock when another process wrote.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, not pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Every commit waits for the disk (see MetadataStore._transaction for
        # the one kind that does not).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        begin = conn.get_execution_options().get("sqlite_begin", "BEGIN")
        if begin:
            conn.exec_driver_sql(begin)
