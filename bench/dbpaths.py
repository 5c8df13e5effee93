"""
C{python -m bench.dbpaths}: what GetObject's database lookup costs on each
database, through the store's ordinary path (SQLAlchemy: pool checkout with
its pre-ping, BEGIN, the statement, COMMIT) and through the raw path
(L{s3balance.store.rawread}: the statement compiled once, run on a DBAPI
connection held open, autocommit).  One thread, no load; CPU time of this
process per lookup (the database server's own CPU is not counted) and wall
time.

The daemon takes the raw path on SQLite only.  On PostgreSQL and MariaDB
every request goes the ordinary way; this measures what a raw path would
save there (docs/benchmarks.md, sixth session).

Needs the servers of the test suite (PostgreSQL on 127.0.0.1:5432, MariaDB
on 127.0.0.1:3306); a database that does not answer is skipped.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from collections.abc import Callable

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from s3balance.store import buckets, migrate, objects
from s3balance.store.connector import MetadataStore
from s3balance.store.interfaces import Location, ObjectRecord
from s3balance.store.rawread import RawConnection
from tests import dbfixtures


def measure(label: str, fn: Callable[[], object], count: int) -> dict:
    for _ in range(min(100, count)):
        fn()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        fn()
    result = {
        "path": label,
        "cpu_us": 1e6 * (time.process_time() - cpu) / count,
        "wall_us": 1e6 * (time.perf_counter() - wall) / count,
    }
    return result


def run_database(kind: str, url: str, count: int) -> list[dict]:
    store = MetadataStore(url)
    engine = store._create_engine()  # as the daemon configures it
    try:
        with engine.begin() as conn:
            migrate.upgrade_connection(conn)
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        with engine.begin() as conn:
            buckets.sync_config_buckets(conn, ["vb"], now)
            intent = objects.begin_write(conn, "b1", "vb/real", now + datetime.timedelta(hours=1), now)
            record = ObjectRecord(
                bucket="vb", key="k", size=3, etag='"e"', last_modified=now, content_type="",
                headers={}, checksums={}, locations=(Location("b1", "vb/real"),),
            )
            objects.commit_object(conn, intent.id, record, None, None, now)

        def ordinary() -> object:
            with engine.connect() as conn:
                if kind == "sqlite":
                    conn = conn.execution_options(sqlite_begin="")  # as the store's single reads
                with conn.begin():
                    return objects.get_object(conn, "vb", "k")

        if kind == "sqlite":
            raw_engine = engine
        else:
            # A positional parameter style, which the raw path's compiled statements use.
            raw_engine = create_engine(url, poolclass=NullPool, paramstyle="format")
        held = raw_engine.raw_connection()
        dbapi = held.dbapi_connection
        if kind == dbfixtures.POSTGRES:
            dbapi.autocommit = True
        elif kind == dbfixtures.MYSQL:
            dbapi.autocommit(True)
        cache: dict = {}

        def raw() -> object:
            return objects.get_object(RawConnection(dbapi, raw_engine.dialect, cache), "vb", "k")

        def raw_pooled() -> object:
            # The raw statement on a connection of the ordinary pool, checked out per lookup.
            fairy = engine.raw_connection()
            try:
                connection = fairy.dbapi_connection
                if kind == dbfixtures.POSTGRES:
                    connection.autocommit = True
                try:
                    return objects.get_object(RawConnection(connection, raw_engine.dialect, cache), "vb", "k")
                finally:
                    if kind == dbfixtures.POSTGRES:
                        connection.autocommit = False
            finally:
                fairy.close()

        assert ordinary() == raw() == raw_pooled(), "the paths disagree"
        rows = [measure("ordinary", ordinary, count), measure("raw", raw, count), measure("pooled", raw_pooled, count)]
        held.close()
        if raw_engine is not engine:
            raw_engine.dispose()
        return [dict(row, database=kind) for row in rows]
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(), prog="python -m bench.dbpaths")
    parser.add_argument("--count", type=int, default=3000, help="lookups per path (default 3000)")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="s3b-dbpaths-") as tmp:
        databases = [("sqlite", f"sqlite:///{tmp}/meta.db")]
        for kind in (dbfixtures.POSTGRES, dbfixtures.MYSQL):
            try:
                databases.append((kind, dbfixtures.create_database(kind)))
            except Exception as error:  # no server: say so and go on
                print(f"{kind}: skipped ({str(error).splitlines()[0]})")
        for kind, url in databases:
            try:
                rows.extend(run_database(kind, url, args.count))
            finally:
                if kind != "sqlite":
                    dbfixtures.drop_database(url)
    print(f"GetObject's lookup, one thread, {args.count} lookups per path (this process's CPU; wall includes the server)")
    print(f"{'database':<12}{'path':<10}{'cpu us':>10}{'wall us':>10}")
    for row in rows:
        print(f"{row['database']:<12}{row['path']:<10}{row['cpu_us']:>10.1f}{row['wall_us']:>10.1f}")
    for kind in dict.fromkeys(row["database"] for row in rows):
        ordinary, raw = (next(r for r in rows if r["database"] == kind and r["path"] == p) for p in ("ordinary", "raw"))
        print(f"{kind}: the raw path takes {raw['cpu_us'] / ordinary['cpu_us']:.2f} of the ordinary path's CPU")


if __name__ == "__main__":
    main()
