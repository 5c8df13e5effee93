"""
Fresh databases for the store tests on SQLite, PostgreSQL and MariaDB/MySQL.

The servers are the development ones (README, Tests); override them with
S3BALANCE_TEST_POSTGRES_URL / S3BALANCE_TEST_MYSQL_URL (an admin URL whose
user may create databases).  Without a server the tests skip, saying why;
with CI=true they fail instead, so a CI run can't pass by skipping.

A store test's database starts at the head revision without migrating
(L{store_database}): SQLite a copy of a file migrated once per process,
PostgreSQL a copy (TEMPLATE) of a database migrated once, MariaDB one of
this process's migrated databases, emptied and checked against the
freshly migrated schema when its test ends (L{_MariaDBPool}).  Migration
at start is tested on its own (test_store.StartMigratesMixin, the
migration tests, daemons on PostgreSQL).
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import threading
import uuid
from typing import Any, Optional

from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url
from twisted.trial.unittest import SkipTest

POSTGRES = "postgresql"
MYSQL = "mysql"

_ADMIN_URLS = {
    POSTGRES: os.environ.get(
        "S3BALANCE_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    ),
    MYSQL: os.environ.get(
        "S3BALANCE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
    ),
}


def _loopback_without_tls(url: str) -> str:
    """
    C{url} with C{ssl_disabled=true} when it is PyMySQL's, on the loopback
    and asks nothing of TLS: PyMySQL otherwise prepares TLS for every
    connection (the system's CA certificates loaded: 21 against 0.6 ms of
    CPU a connection), to use it if the server offers it, and the suite
    makes thousands of connections to a test server on this machine.
    """
    parsed = make_url(url)
    if (
        parsed.drivername == "mysql+pymysql"
        and parsed.host in ("127.0.0.1", "localhost", "::1")
        and not any(name.startswith("ssl") for name in parsed.query)
    ):
        return parsed.update_query_dict({"ssl_disabled": "true"}).render_as_string(hide_password=False)
    return url


_ADMIN_URLS[MYSQL] = _loopback_without_tls(_ADMIN_URLS[MYSQL])
_NAMES = {POSTGRES: "PostgreSQL", MYSQL: "MariaDB/MySQL"}
_CONNECT_ARGS = {POSTGRES: {"connect_timeout": 3}, MYSQL: {"connect_timeout": 3}}

# kind -> None (reachable) or the error text; asked once per process.
_reachability: dict[str, Optional[str]] = {}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _kind_of(url: str) -> str:
    return POSTGRES if make_url(url).get_backend_name() == "postgresql" else MYSQL


def _admin_engine(kind: str, admin_url: Optional[str] = None):
    return create_engine(
        admin_url or _ADMIN_URLS[kind],
        poolclass=pool.NullPool,
        connect_args=_CONNECT_ARGS[kind],
        isolation_level="AUTOCOMMIT",
    )


def require_server(kind: str) -> None:
    """SkipTest (or, under CI=true, an error) when the server does not answer."""
    if kind not in _reachability:
        engine = _admin_engine(kind)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            _reachability[kind] = None
        except Exception as e:  # any failure to connect means "not here"
            _reachability[kind] = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
        finally:
            engine.dispose()
    error = _reachability[kind]
    if error is None:
        return
    url = make_url(_ADMIN_URLS[kind])
    message = f"{_NAMES[kind]} not reachable at {url.host}:{url.port}: {error}"
    if in_ci():
        raise RuntimeError(message + " (CI=true: database tests must run)")
    raise SkipTest(message)


def create_database(kind: str) -> str:
    """Create a uniquely named empty database; return its URL (as a string, password included)."""
    require_server(kind)
    return create_database_on(_ADMIN_URLS[kind])


def create_database_on(admin_url: str, prefix: str = "s3b_test") -> str:
    """create_database on the server of C{admin_url} (also used by the benchmarks)."""
    kind = _kind_of(admin_url)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    engine = _admin_engine(kind, admin_url)
    try:
        with engine.connect() as conn:
            if kind == POSTGRES:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    finally:
        engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


_templates: dict[str, str] = {}
_templates_lock = threading.Lock()


def _migrated_template(kind: str) -> str:
    """The name of this process's PostgreSQL database at the head revision (made on first use)."""
    from s3balance.store import migrate

    with _templates_lock:
        if kind not in _templates:
            url = create_database_on(_ADMIN_URLS[kind], prefix="s3b_test_template")
            atexit.register(drop_database, url)
            migrate.upgrade(url)  # NullPool: no connection stays open (a template must have none)
            _templates[kind] = make_url(url).database or ""
        return _templates[kind]


def create_migrated_database(kind: str) -> str:
    """
    A uniquely named database at the head revision: on PostgreSQL a copy
    (CREATE DATABASE ... TEMPLATE) of one this process migrated once, which
    takes a tenth of migrating each; on MariaDB an empty one, for whoever
    opens it to migrate (MetadataStore does).
    """
    require_server(kind)
    if kind != POSTGRES:
        return create_database(kind)
    template = _migrated_template(kind)
    name = f"s3b_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    engine = _admin_engine(kind)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    finally:
        engine.dispose()
    return make_url(_ADMIN_URLS[kind]).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, admin_url: Optional[str] = None) -> None:
    """Drop the database of C{url} (connecting as C{admin_url}, by default the test servers' admin)."""
    parsed = make_url(url)
    kind = _kind_of(url)
    engine = _admin_engine(kind, admin_url)
    try:
        with engine.connect() as conn:
            if kind == POSTGRES:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
    finally:
        engine.dispose()


class _MariaDBPool:
    """
    Migrated MariaDB databases for the store tests, used again instead of
    migrated and dropped for each (three seconds a test).

    The first is migrated (C{migrate.upgrade}) and its schema recorded:
    every table's C{SHOW CREATE TABLE} and every row of the tables that
    have some (C{alembic_version}).  When a test ends, its database is
    given back, and a background thread makes it that again: each table
    that was written (C{update_time}), holds a row or differs in its
    definition (an C{AUTO_INCREMENT} moved on) is emptied with C{TRUNCATE}
    (which makes the table anew), then every table's definition and rows
    are compared with the record.  A database that differs in anything (a
    test that migrated it down and up) is dropped instead.  Two databases
    take turns, so that one is emptied while a test runs on the other.
    """

    SIZE = 2

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._free: list[str] = []
        self._made: list[str] = []
        self._resetting = 0
        self._schema: Optional[dict[str, str]] = None
        self._rows: dict[str, list[tuple[Any, ...]]] = {}
        self._resets: queue.Queue[str] = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    def take(self) -> str:
        with self._lock:
            while not self._free and self._resetting and len(self._made) >= self.SIZE:
                self._lock.wait()
            if self._free:
                return self._free.pop()
            if not self._made:
                atexit.register(self._drop_all)
            placeholder = f"(migrating {len(self._made)})"
            self._made.append(placeholder)  # counts while it migrates
        try:
            from s3balance.store import migrate

            url = create_database(MYSQL)
            migrate.upgrade(url)
            schema = None if self._schema is not None else self._snapshot(url)
        except BaseException:
            with self._lock:
                self._made.remove(placeholder)
                self._lock.notify_all()
            raise
        with self._lock:
            self._made[self._made.index(placeholder)] = url
            if schema is not None and self._schema is None:
                self._schema, self._rows = schema
        return url

    def give_back(self, url: str) -> None:
        """The database of a test that ended: emptied in the background, kept if it is as migrated, else dropped."""
        with self._lock:
            self._resetting += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reset-mariadb", daemon=True)
                self._thread.start()
        self._resets.put(url)

    def _run(self) -> None:
        while True:
            url = self._resets.get()
            try:
                clean = self._reset(url)
            except Exception:
                clean = False
            with self._lock:
                self._resetting -= 1
                if clean:
                    self._free.append(url)
                elif url in self._made:
                    self._made.remove(url)
                self._lock.notify_all()
            if not clean:
                try:
                    drop_database(url)
                except Exception:
                    pass  # a database left behind is no test's failure
            self._resets.task_done()

    def _engine(self, url: str):
        return create_engine(url, poolclass=pool.NullPool, connect_args=_CONNECT_ARGS[MYSQL])

    def _snapshot(self, url: str) -> tuple[dict[str, str], dict[str, list[tuple[Any, ...]]]]:
        engine = self._engine(url)
        try:
            with engine.connect() as conn:
                schema = self._definitions(conn)
                rows = {}
                for table in schema:
                    found = self._rows_of(conn, table)
                    if found:
                        rows[table] = found
            return schema, rows
        finally:
            engine.dispose()

    @staticmethod
    def _definitions(conn) -> dict[str, str]:
        names = conn.execute(
            text("SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = DATABASE()")
        ).all()
        return {
            name: conn.execute(text(f"SHOW CREATE TABLE `{name}`")).one()[1] if kind == "BASE TABLE" else kind
            for name, kind in names
        }

    @staticmethod
    def _rows_of(conn, table: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(row) for row in conn.execute(text(f"SELECT * FROM `{table}`")))

    def _reset(self, url: str) -> bool:
        schema, rows = self._schema, self._rows
        if schema is None:
            return False
        engine = self._engine(url)
        try:
            with engine.connect() as conn:
                # A connection a test left holding a lock fails the reset, not the run.
                conn.execute(text("SET SESSION lock_wait_timeout = 10"))
                conn.execute(text("SET SESSION foreign_key_checks = 0"))
                definitions = self._definitions(conn)
                if set(definitions) != set(schema):
                    return False
                written = {
                    name
                    for (name,) in conn.execute(
                        text(
                            "SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = DATABASE() AND update_time IS NOT NULL"
                        )
                    )
                }
                for table in sorted(schema):
                    if table in rows:
                        continue  # alembic_version: compared below, never emptied
                    has_rows = conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM `{table}`)")).scalar()
                    if table in written or has_rows or definitions[table] != schema[table]:
                        conn.execute(text(f"TRUNCATE TABLE `{table}`"))
                if self._definitions(conn) != schema:
                    return False
                return all(self._rows_of(conn, table) == rows.get(table, []) for table in schema)
        finally:
            engine.dispose()

    def _drop_all(self) -> None:
        """At exit: the resets under way end, then every database is dropped."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._resets.join(), done.set()), daemon=True).start()
        done.wait(60)
        with self._lock:
            made, self._made, self._free = self._made, [], []
        for url in made:
            if not url.startswith("("):
                drop_database(url)


_mariadb_pool = _MariaDBPool()


_sqlite_template_lock = threading.Lock()
_sqlite_template: Optional[str] = None


def migrated_sqlite_template() -> str:
    """
    The path of an empty SQLite store at the head revision, migrated once
    per test process (in the harness's temp dir): a test's or a daemon's
    new SQLite database starts as a copy of it, and its store finds the
    schema current and neither loads Alembic nor migrates.  Migration at
    start stays tested: test_store.StartMigratesMixin, the migration
    tests, and daemons on an empty PostgreSQL database (test_faults).
    """
    global _sqlite_template
    with _sqlite_template_lock:
        if _sqlite_template is None:
            from s3balance.store import migrate
            from tests.harness.process import harness_dir

            path = os.path.join(harness_dir(), f"template-{os.getpid()}.db")
            if os.path.exists(path):
                os.unlink(path)
            migrate.upgrade(f"sqlite:///{path}")
            _sqlite_template = path
        return _sqlite_template


def migrated_sqlite_url(testcase) -> str:
    """L{sqlite_url}, its file a copy of L{migrated_sqlite_template}."""
    url = sqlite_url(testcase)
    path = make_url(url).database or ""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(migrated_sqlite_template(), path)
    return url


def sqlite_url(testcase) -> str:
    """A database file in a fresh directory of the test's temp dir (not created yet)."""
    return "sqlite:///" + os.path.abspath(os.path.join(testcase.mktemp(), "db", "store.sqlite"))


def fresh_database(testcase, kind: str) -> str:
    """A URL of an empty database for this test, removed when the test ends."""
    if kind == "sqlite":
        return sqlite_url(testcase)
    url = create_database(kind)
    testcase.addCleanup(drop_database, url)
    return url


def database_at(testcase, kind: str, revision: str) -> tuple[str, Any]:
    """
    A fresh database (L{fresh_database}) migrated to C{revision}, and an
    engine on it disposed of when the test ends: where a migration test
    starts.  -> (URL, engine).
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from s3balance.store import migrate

    url = fresh_database(testcase, kind)
    if kind == "sqlite":
        os.makedirs(os.path.dirname(make_url(url).database or ""), exist_ok=True)
    migrate.upgrade(url, revision)
    engine = create_engine(url)
    testcase.addCleanup(engine.dispose)
    return url, engine


def store_database(testcase, kind: str) -> str:
    """
    Like L{fresh_database}, but at the head revision already, for a test
    whose store would migrate the empty database before anything else
    touches it: on SQLite a copy of L{migrated_sqlite_template}, on
    PostgreSQL L{create_migrated_database}, on MariaDB one of
    L{_MariaDBPool}'s databases, given back when the test ends.
    """
    if kind == "sqlite":
        return migrated_sqlite_url(testcase)
    if kind == MYSQL:
        require_server(kind)
        url = _mariadb_pool.take()
        testcase.addCleanup(_mariadb_pool.give_back, url)
        return url
    url = create_migrated_database(kind)
    testcase.addCleanup(drop_database, url)
    return url
