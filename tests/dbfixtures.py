"""
Fresh databases for the store tests on SQLite, PostgreSQL and MariaDB/MySQL.

The servers are the development ones (README, Tests); override them with
S3BALANCE_TEST_POSTGRES_URL / S3BALANCE_TEST_MYSQL_URL (an admin URL whose
user may create databases).  Without a server the tests skip, saying why;
with CI=true they fail instead, so a CI run can't pass by skipping.
"""

from __future__ import annotations

import atexit
import os
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
    takes a tenth of migrating each; elsewhere an empty one, for whoever
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
    Like L{fresh_database}, for a test whose store migrates the database
    before anything else touches it: on PostgreSQL the database is already
    at the head revision (L{create_migrated_database}), elsewhere empty.
    """
    if kind == "sqlite":
        return sqlite_url(testcase)
    url = create_migrated_database(kind)
    testcase.addCleanup(drop_database, url)
    return url
