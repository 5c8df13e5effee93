"""
Running the store's transactions: one SQLAlchemy engine behind the store's
own threads (L{DatabaseThreads}), retries of serialization failures and
deadlocks, deadlines, and on SQLite the PUT path's commits grouped into one
transaction and the hot statements run on a raw connection (L{rawread}).

Over 500 lines because it is one job, the life of a transaction, whose parts
(grouping, raw paths, retries, deadlines) share the same state and must be
read together.  The store's operations are in L{connector.MetadataStore}.
"""

from __future__ import annotations

import datetime
import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, TypeVar, TypeVarTuple, Union

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from s3balance.store import objects, schema_head
from s3balance.store.dbthreads import DatabaseThreads, Deadlines, Outcome, fire_all, run_call
from s3balance.store.engine import (
    _configure_mysql,
    _configure_postgres,
    _configure_sqlite,
    _is_timeout,
    _lift_statement_timeout,
    _positional_dialect,
    is_retryable,
)
from s3balance.store.interfaces import StoreUnavailable
from s3balance.store.probe import DatabaseProbe
from s3balance.store.rawread import RawConnection

UTC = datetime.UTC

# _raw_group's answer when the ordinary path must run the transactions.
_FALL_BACK = object()
# What _raw_group says of one transaction the ordinary path must run alone.
_RUN_ALONE = None

# A transaction function is called fn(conn, *args) -> T: the runner's
# methods take fn and its arguments as Callable[[Connection, *Ts], T] and
# *Ts, so a call's arguments are checked against fn's parameters and its
# Deferred is a Deferred[T].  (Not ParamSpec: PEP 612 allows no keyword
# parameter of the runner's own, write=, durable=, ..., beside P.args.)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# How often a transaction that lost a race (deadlock, serialization failure,
# concurrent insert of the same key, SQLite busy) is run again.
MAX_ATTEMPTS = 8


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(UTC)


class StoreRunner:
    """
    @param url: a SQLAlchemy URL (string or L{URL}).
    @param reactor: the reactor the Deferreds fire in (default: the global one).
    @param max_threads: pool size for PostgreSQL/MySQL; SQLite always uses one
        thread (a single writer: SQLite serializes writers anyway, and one
        thread never meets "database is locked" from itself).
    @param auto_migrate: run C{alembic upgrade head} in L{start}.
    @param pool_recycle: seconds after which a pooled server connection is replaced.
    @param now: the clock (tests), returning timezone-aware UTC datetimes.
    @param statement_timeout: seconds the server lets one statement run
        (PostgreSQL C{statement_timeout}, MariaDB C{max_statement_time},
        the SQLite busy timeout), and the most a transaction spends on its
        retries; 0: no limit.
    @param connect_timeout: seconds connecting to a server may take; 0: the driver's default.
    @param request_timeout: seconds a caller waits for one answer before its
        Deferred fails with L{StoreUnavailable}; a call still queued then is
        never run.  0: no limit.
    """

    log = Logger()

    def __init__(
        self,
        url: Union[str, URL],
        reactor: Any = None,
        max_threads: int = 10,
        auto_migrate: bool = True,
        pool_recycle: float = 300,
        now: Callable[[], datetime.datetime] = _utcnow,
        deletion_grace: float = 0.0,
        statement_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        request_timeout: float = 10.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.url: URL = make_url(url)
        self._statement_timeout = statement_timeout
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._deadlines: Optional[Deadlines] = None
        if request_timeout:
            self._deadlines = Deadlines(
                reactor,
                request_timeout,
                lambda: StoreUnavailable(f"the database did not answer within {request_timeout:g} s"),
            )
        # /health's view of the database (s3balance.s3.resource).
        self.probe = DatabaseProbe(self.ping)
        self._reactor = reactor
        self._is_sqlite = self.url.get_backend_name() == "sqlite"
        self._is_postgres = self.url.get_backend_name() == "postgresql"
        self._max_threads = 1 if self._is_sqlite else max(1, max_threads)
        self._auto_migrate = auto_migrate
        self._pool_recycle = pool_recycle
        self._now = now
        # Replaced and deleted copies stay on their backend this long, so
        # reads that found them just before are not cut off.
        self.deletion_grace = datetime.timedelta(seconds=deletion_grace)
        self._engine: Optional[Engine] = None
        # SQLite: the hot statements compiled once (RawConnection's cache), run
        # on a connection of their own (rawread.py).  None: no raw paths.
        self._raw_statements: Optional[dict[Any, Any]] = None
        # Told the duration of each statement the raw paths run (see watch_statements).
        self._statement_observer: Optional[Callable[[float], None]] = None
        self._raw_connection: Any = None
        # PostgreSQL: the raw paths' statements compiled once, for a positional
        # parameter style (_pooled_transaction); None
        # until started, and on SQLite, MariaDB and MySQL.
        self._pg_raw_dialect: Any = None
        self._pg_raw_statements: dict[Any, Any] = {}
        self._driver_errors: tuple[type[BaseException], ...] = ()
        self._pool: Optional[DatabaseThreads] = None
        self._shutdown_trigger: Any = None
        # SQLite: the PUT path's write transactions waiting to be committed
        # together (see _grouped); (fn, args, durable, Deferred).
        self._group: list[tuple[Callable[..., Any], tuple[Any, ...], bool, Deferred[Any]]] = []
        self._group_lock = threading.Lock()
        self._group_scheduled = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url.render_as_string(hide_password=True)}>"

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Deferred[None]:
        if self._pool is not None:
            return defer.succeed(None)
        self._pool = DatabaseThreads(self._reactor, self._max_threads, "s3balance-db")
        self._pool.start()
        # Without stop() (a crash of the service tree) the pool's threads would
        # keep the process alive.
        self._shutdown_trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self._stop_pool)
        self.log.info("starting metadata store {url}", url=self.url.render_as_string(hide_password=True))
        d = self._pool.submit(self._start_blocking)

        def failed(failure: Failure) -> Failure:
            self._stop_pool()
            return failure

        d.addErrback(failed)
        return d

    def _start_blocking(self) -> None:
        self._engine = self._create_engine()
        if self._is_sqlite:
            self._raw_statements = {}
        elif self._is_postgres:
            self._pg_raw_dialect = _positional_dialect(self.url)
            # What the pooled paths hand to the ordinary path: the driver's
            # errors, and the pool's own (a failed checkout).
            self._driver_errors = (self._engine.dialect.loaded_dbapi.Error, SQLAlchemyError)
        if self._auto_migrate:
            with self._engine.begin() as conn:
                # An index built on a big table may take longer than a statement may.
                _lift_statement_timeout(conn)
                before = after = schema_head.stored_revision(conn)
                if before is None or before != schema_head.head_revision():
                    # Alembic is loaded only when there is something to do.
                    from s3balance.store import migrate

                    before = migrate.current_revision_of(conn)
                    migrate.upgrade_connection(conn)
                    after = migrate.current_revision_of(conn)
            if before != after:
                self.log.info("migrated the database from {before} to {after}", before=before, after=after)
            if not self._is_sqlite and not self._is_postgres:
                self._engine.dispose()  # that session's statement timeout was lifted (MariaDB/MySQL)

    def _create_engine(self) -> Engine:
        if self._is_sqlite:
            database = self.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # SQLite has no statement timeout: the wait for another
            # process's lock is what it bounds (10 s when none is set).
            busy = self._statement_timeout or 10.0
            engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": busy})
            _configure_sqlite(engine, busy)
            return engine
        options: dict[str, object] = {
            "pool_pre_ping": True,
            "pool_recycle": self._pool_recycle,
            "pool_size": self._max_threads,
            "max_overflow": 2,
        }
        connect_args: dict[str, object] = {}
        if self._connect_timeout and "connect_timeout" not in self.url.query:
            # Whole seconds; libpq takes less than 2 as 2.
            connect_args["connect_timeout"] = max(2 if self._is_postgres else 1, math.ceil(self._connect_timeout))
        if self.url.get_backend_name() in ("mysql", "mariadb"):
            # READ COMMITTED: no gap locks, so two daemons inserting the same
            # new key wait on the unique index instead of deadlocking.
            options["isolation_level"] = "READ COMMITTED"
            if self._statement_timeout:
                # A server that stopped answering (a network black hole)
                # fails the socket read a little after the server would
                # have ended the statement itself.
                io_timeout = math.ceil(self._statement_timeout) + 5
                connect_args.setdefault("read_timeout", io_timeout)
                connect_args.setdefault("write_timeout", io_timeout)
            engine = create_engine(self.url, connect_args=connect_args, **options)
            _configure_mysql(engine, self._statement_timeout)
            return engine
        engine = create_engine(self.url, connect_args=connect_args, **options)
        if self._is_postgres:
            _configure_postgres(engine, self._statement_timeout)
        return engine

    def stop(self) -> Deferred[None]:
        if self._deadlines is not None:
            self._deadlines.stop()
        if self._pool is None:
            return defer.succeed(None)
        d = self._pool.submit(self._dispose)
        # Joining the pool's threads blocks; do it off the reactor thread.
        d.addBoth(lambda _: threads.deferToThread(self._stop_pool))
        return d

    def _dispose(self) -> None:
        raw, self._raw_connection = self._raw_connection, None
        if raw is not None:
            raw.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        trigger, self._shutdown_trigger = self._shutdown_trigger, None
        if trigger is not None:
            self._reactor.callFromThread(self._remove_trigger, trigger)
        if pool is not None:
            pool.stop()

    def _remove_trigger(self, trigger: Any) -> None:
        try:
            self._reactor.removeSystemEventTrigger(trigger)
        except (ValueError, KeyError):
            pass  # already fired: we are in the shutdown itself

    # -- running transactions -------------------------------------------------

    def _transaction(
        self,
        fn: Callable[[Connection, *Ts], T],
        *args: *Ts,
        write: bool = True,
        durable: bool = True,
        single: bool = False,
    ) -> T:
        """
        Blocking, on the pool: run fn(conn, *args) in one transaction, retrying lost races.

        C{durable=False} commits without waiting for the disk (SQLite
        C{synchronous=NORMAL}, PostgreSQL C{synchronous_commit=off}): the
        commit survives a crash of the daemon but not a power loss of the
        database host until the next durable commit, which flushes it too.
        Only write intents use it: losing one to a power cut can at worst
        leave a stray backend object for C{fsck}, never a wrong answer.

        C{single=True} (reads of one statement): SQLite runs it without BEGIN.

        (On SQLite the PUT path's writes take L{_grouped} instead, and come
        here only when that fails.)
        """
        if self._engine is None:
            raise RuntimeError("the metadata store is not started")
        # Retries end with the statement timeout too: a database busy for
        # longer is unavailable, not worth another round.
        give_up = time.monotonic() + self._statement_timeout if self._statement_timeout else math.inf
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self._engine.connect() as conn:
                    if self._is_sqlite:
                        if write:
                            conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
                        elif single:
                            # One SELECT is a snapshot by itself; BEGIN would
                            # be a fifth of the cost of a small read.
                            conn = conn.execution_options(sqlite_begin="")
                    if durable:
                        with conn.begin():
                            return fn(conn, *args)
                    return self._relaxed(conn, fn, *args)
            except objects.ConcurrentInsert:
                if attempt == MAX_ATTEMPTS or time.monotonic() >= give_up:
                    raise
            except DBAPIError as e:
                if attempt == MAX_ATTEMPTS or time.monotonic() >= give_up or not is_retryable(e):
                    if e.connection_invalidated or isinstance(e, (OperationalError, InterfaceError)) or _is_timeout(e):
                        raise StoreUnavailable(str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else "database error") from e
                    raise
                self.log.debug("retrying a transaction after {error}", error=str(e.orig))
            # A short random pause (on a pool thread, not the reactor) lets the
            # winner of the race finish before we try again.
            time.sleep(random.uniform(0, 0.005 * attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def watch_statements(self, observe: Callable[[float], None]) -> None:
        """
        Tell C{observe} (on the store's threads) how long each statement
        took, in seconds: through SQLAlchemy's events for the ordinary path,
        directly for the raw ones, which those events don't see.
        """
        if self._engine is None:
            raise RuntimeError("the metadata store is not started")
        self._statement_observer = observe

        def before(
            conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
        ) -> None:
            conn.info.setdefault("s3balance_started", []).append(time.perf_counter())

        def after(
            conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
        ) -> None:
            started = conn.info.get("s3balance_started")
            if started:
                observe(time.perf_counter() - started.pop())

        event.listen(self._engine, "before_cursor_execute", before)
        event.listen(self._engine, "after_cursor_execute", after)

    def _raw_connection_now(self) -> Any:
        """On the pool, SQLite: the DBAPI connection the raw paths share (opened on first use)."""
        if self._raw_connection is None:
            assert self._engine is not None
            self._raw_connection = self._engine.raw_connection()
        return self._raw_connection.dbapi_connection

    def _raw_conn(self) -> RawConnection:
        """On the pool, SQLite: that connection, as the transaction functions take one."""
        assert self._engine is not None and self._raw_statements is not None
        return RawConnection(
            self._raw_connection_now(), self._engine.dialect, self._raw_statements, self._statement_observer
        )

    def _drop_raw_connection(self) -> None:
        connection, self._raw_connection = self._raw_connection, None
        if connection is not None:
            try:
                connection.invalidate()
            except Exception:
                pass

    def _raw_group(self, items: Sequence[tuple[Callable[..., Any], tuple[Any, ...], bool]]) -> Any:
        """
        On the pool, SQLite: each C{fn(conn, *args)} of C{items} on a
        L{RawConnection}, all between one BEGIN IMMEDIATE and one COMMIT,
        without SQLAlchemy (a third of a small PUT's database time).

        One COMMIT for several transactions is group commit: the fsync of a
        durable commit (about 0.9 ms of waiting and 0.1 ms of CPU here) is
        shared.  Each function runs inside a SAVEPOINT, so one that raises
        (a failed precondition, an expired intent) is undone alone and its
        exception is its answer, as if it had run in a transaction of its
        own; the others still commit.  The commit waits for the disk when any
        item is durable.

        Returns one outcome per item: C{(True, value)}, C{(False, Failure)},
        or C{_RUN_ALONE} for a lost race (L{objects.ConcurrentInsert}) that
        the ordinary path must retry.  Any sqlite3 error before the commit
        rolls everything back and returns C{_FALL_BACK}: the ordinary path
        then runs each function from the start, alone, with its retries and
        error reporting.  Once COMMIT has returned, the outcomes stand
        whatever follows: running a committed transaction again would take a
        second write intent, or find its own intent gone.
        """
        committed = False
        outcomes: Any = _FALL_BACK
        durable = any(item[2] for item in items)
        try:
            conn = self._raw_conn()
            raw = conn.connection
            if not durable:
                raw.execute("PRAGMA synchronous=NORMAL")  # see _relaxed
            try:
                raw.execute("BEGIN IMMEDIATE")
                results: list[Optional[Outcome[Any]]] = []
                for fn, args, _ in items:
                    raw.execute("SAVEPOINT item")
                    try:
                        results.append((True, fn(conn, *args)))
                    except sqlite3.Error:
                        raise
                    except objects.ConcurrentInsert:
                        raw.execute("ROLLBACK TO item")
                        results.append(_RUN_ALONE)
                    except Exception:
                        results.append((False, Failure()))
                        raw.execute("ROLLBACK TO item")
                    raw.execute("RELEASE item")
                raw.execute("COMMIT")
                committed, outcomes = True, results
            finally:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                if not durable:
                    raw.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as e:
            self.log.debug("raw transaction: {error}; {what}", error=str(e),
                           what="committed already" if committed else "using the ordinary path")
            self._drop_raw_connection()
        return outcomes

    def _grouped(self, fn: Callable[[Connection, *Ts], T], args: tuple[*Ts], durable: bool) -> Deferred[T]:
        """
        SQLite: run C{fn} in the next group commit (L{_raw_group}).

        A group is every such call made until the database thread takes it:
        one alone when the thread is idle, several when commits queue behind
        an fsync under load, so the wait for the disk is shared instead of
        serialised.  The Deferred fires with the function's own result or
        exception, as from L{_run}.
        """
        assert self._pool is not None
        # Failed (past the request timeout) or cancelled before its group runs: left out of it.
        d: Deferred[T] = Deferred(lambda d: None)
        with self._group_lock:
            self._group.append((fn, args, durable, d))
            if self._group_scheduled:
                return d
            self._group_scheduled = True
        self._pool.submit(self._run_group).addCallback(fire_all)
        return d

    def _run_group(self) -> list[tuple[Deferred[Any], bool, Any]]:
        """On the pool: commit the waiting group; (Deferred, ok, value) for each call, never an exception."""
        with self._group_lock:
            items, self._group = self._group, []
            self._group_scheduled = False
        items = [item for item in items if not item[3].called]  # (see _grouped)
        if not items:
            return []
        try:
            outcomes = self._raw_group([(fn, args, durable) for fn, args, durable, _ in items])
            if outcomes is _FALL_BACK:
                outcomes = [_RUN_ALONE] * len(items)
            delivered: list[tuple[Deferred[Any], bool, Any]] = []
            for (fn, args, durable, d), outcome in zip(items, outcomes, strict=True):
                if outcome is _RUN_ALONE:
                    outcome = run_call(self._transaction, fn, *args, durable=durable)
                delivered.append((d, *outcome))
            return delivered
        except BaseException:
            failure = Failure()
            return [(d, False, failure) for _, _, _, d in items]

    def _relaxed(self, conn: Connection, fn: Callable[[Connection, *Ts], T], *args: *Ts) -> T:
        """fn in a transaction whose commit does not wait for the disk."""
        if self._is_sqlite:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA synchronous=NORMAL")  # (outside a transaction: sqlite3 autocommit)
            try:
                with conn.begin():
                    return fn(conn, *args)
            finally:
                raw.execute("PRAGMA synchronous=FULL")
        with conn.begin():
            if self._is_postgres:
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return fn(conn, *args)

    def _run(
        self,
        fn: Callable[[Connection, *Ts], T],
        *args: *Ts,
        write: bool = True,
        durable: bool = True,
        single: bool = False,
        raw: bool = False,
    ) -> Deferred[T]:
        """
        C{fn} in a transaction on the store's threads.  C{raw=True} (the PUT
        path's writes, whose statements are prebuilt): on SQLite, in the next
        group commit (L{_grouped}).
        """
        if self._pool is None:
            return defer.fail(RuntimeError("the metadata store is not started"))
        if raw and self._raw_statements is not None:
            return self._bounded(self._grouped(fn, args, durable))
        if raw and self._pg_raw_dialect is not None:
            return self._bounded(self._pool.submit(self._pooled_transaction, fn, args, durable))
        return self._bounded(
            self._pool.submit(lambda: self._transaction(fn, *args, write=write, durable=durable, single=single))
        )

    def _bounded(self, d: Deferred[T]) -> Deferred[T]:
        """
        C{d}, failed with L{StoreUnavailable} when it has not fired within
        the request timeout (never run when still queued then, see
        L{Deadlines}).  A request waiting on a database that does not answer
        gets 503 instead of waiting with it.
        """
        if self._deadlines is None:
            return d
        return self._deadlines.add(d)

    def ping(self) -> Deferred[None]:
        """One statement on the store's threads, bounded as every call (for /health)."""
        if self._pool is None:
            return defer.fail(StoreUnavailable("the metadata store is not started"))
        return self._bounded(self._pool.submit(self._ping_blocking))

    def _ping_blocking(self) -> None:
        assert self._engine is not None
        # A table, not just "SELECT 1": SQLite must open the database file.
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1 FROM buckets WHERE 1 = 0").all()
        except DBAPIError as e:
            raise StoreUnavailable(str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else "database error") from e

    def _pooled_transaction(
        self,
        fn: Callable[[Connection, *Ts], T],
        args: tuple[*Ts],
        durable: bool = True,
        read_one: bool = False,
    ) -> T:
        """
        On the pool, PostgreSQL: C{fn(conn, *args)} on a connection of the
        engine's pool through L{RawConnection}, without SQLAlchemy's
        statement machinery (about a third of the ordinary path's CPU per
        statement: python -m bench.dbpaths).  C{read_one}: a single SELECT,
        run in autocommit (one round trip, no BEGIN and COMMIT; psycopg2's
        switch is client-side).  Otherwise one transaction, committed, or
        rolled back when C{fn} raises: its own exceptions (a failed
        precondition, an expired intent) are its answer.

        A database error, a lost race on the unique key included, rolls back
        and hands the call to the ordinary path, which runs it from the
        start with its retries and reporting.  As there, a COMMIT lost with
        its connection may have committed; running the transaction again is
        what the ordinary path's retry does too (objects.is_referenced covers
        the one case where that matters).
        """
        assert self._engine is not None
        # A read may always run again on the ordinary path; a write's own
        # exceptions are its answer, only the database's take the other path.
        fall_back_on = Exception if read_one else self._driver_errors
        fairy: Any = None
        broken = False
        try:
            fairy = self._engine.raw_connection()
            connection = fairy.dbapi_connection
            if read_one:
                connection.autocommit = True
                broken = True  # until autocommit is off again: the pool must not get it back like this
            conn: Any = RawConnection(
                connection, self._pg_raw_dialect, self._pg_raw_statements, self._statement_observer
            )
            if read_one:
                try:
                    return fn(conn, *args)
                finally:
                    connection.autocommit = False
                    broken = False
            try:
                if not durable:
                    cursor = connection.cursor()
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")  # see _relaxed
                    cursor.close()
                result = fn(conn, *args)
                connection.commit()
                return result
            except BaseException:
                try:
                    connection.rollback()
                except self._driver_errors:
                    broken = True  # the connection is gone; so is its transaction
                raise
        except fall_back_on as e:
            self.log.debug("pooled call failed ({error}); using the ordinary path", error=str(e))
        finally:
            if fairy is not None:
                if broken or fairy.dbapi_connection is None or fairy.dbapi_connection.closed:
                    fairy.invalidate()  # discards the connection and checks the fairy in
                else:
                    fairy.close()
        return self._transaction(fn, *args, write=not read_one, durable=durable, single=read_one)

    def _read(self, fn: Callable[[Connection, *Ts], T], *args: *Ts, single: bool = False) -> Deferred[T]:
        return self._run(fn, *args, write=False, single=single)

    def _in(self, seconds: float) -> datetime.datetime:
        return self._now() + datetime.timedelta(seconds=seconds)
