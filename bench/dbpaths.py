"""
C{python -m bench.dbpaths}: what GetObject's database lookup costs on each
database, through the store's own code, blocking, on one thread with no load:
the ordinary path (SQLAlchemy: pool checkout with its pre-ping, BEGIN, the
statement, COMMIT) and the path the daemon takes (SQLite: the raw connection
of L{s3balance.store.rawread}; PostgreSQL: the statement on a pooled
connection in autocommit; MariaDB/MySQL: the ordinary path), plus, as a
what-if, the raw statement on a DBAPI connection held open in autocommit.
CPU time of this process per lookup (the database server's own CPU is not
counted) and wall time.

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

from s3balance.store import buckets, objects
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
    return {
        "path": label,
        "cpu_us": 1e6 * (time.process_time() - cpu) / count,
        "wall_us": 1e6 * (time.perf_counter() - wall) / count,
    }


def run_database(kind: str, url: str, count: int) -> list[dict]:
    store = MetadataStore(url)
    store._start_blocking()  # engine, raw-path state and migrations, as the daemon's start does
    engine = store._engine
    assert engine is not None
    held = None
    try:
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        with engine.begin() as conn:
            buckets.sync_config_buckets(conn, ["vb"], now)
            intent = objects.begin_write(conn, "b1", "vb/real", 3600, now)
            record = ObjectRecord(
                bucket="vb", key="k", size=3, etag='"e"', last_modified=now, content_type="",
                headers={}, checksums={}, locations=(Location("b1", "vb/real"),),
            )
            objects.commit_object(conn, intent.id, record, None, None, now)

        def ordinary() -> object:
            return store._transaction(objects.get_object, "vb", "k", write=False, single=True)

        paths: list[tuple[str, Callable[[], object]]] = [("ordinary", ordinary)]
        if kind == "sqlite":
            paths.append(("daemon", lambda: store._raw_get_object("vb", "k")))
        elif kind == dbfixtures.POSTGRES:
            paths.append(("daemon", lambda: store._pooled_transaction(objects.get_object, ("vb", "k"), True, True)))
        # What-if: the raw statement on a connection held open, in autocommit.
        raw_engine = create_engine(url, poolclass=NullPool, paramstyle="format") if kind != "sqlite" else engine
        held = raw_engine.raw_connection()
        dbapi = held.dbapi_connection
        if kind == dbfixtures.POSTGRES:
            dbapi.autocommit = True
        elif kind == dbfixtures.MYSQL:
            dbapi.autocommit(True)
        cache: dict = {}
        paths.append(("held", lambda: objects.get_object(RawConnection(dbapi, raw_engine.dialect, cache), "vb", "k")))

        results = [fn() for _, fn in paths]
        assert all(result == results[0] for result in results), "the paths disagree"
        return [dict(measure(label, fn, count), database=kind) for label, fn in paths]
    finally:
        if held is not None:
            held.close()
        store._dispose()


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
    for row in rows:
        if row["path"] != "ordinary":
            ordinary = next(r for r in rows if r["database"] == row["database"] and r["path"] == "ordinary")
            print(f"{row['database']}: {row['path']} takes {row['cpu_us'] / ordinary['cpu_us']:.2f} of the ordinary path's CPU")


if __name__ == "__main__":
    main()
