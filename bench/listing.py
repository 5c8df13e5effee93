"""
ListObjectsV2 page times with many keys in one virtual bucket, on SQLite and
PostgreSQL (and MariaDB: C{--list-db sqlite,postgres,mariadb}).

The rows are written straight into a fresh database with SQLAlchemy bulk
inserts into the tables of C{s3balance.store.tables} (schema created by the
project's Alembic migrations, ids explicit, one location row per object as
the store itself writes them): C{MetadataStore.commit_object} does one
transaction per object, far too slow for 10^6.  Then a daemon is started on
that database and pages are timed through it with the SigV4 client, so a
page's time is the whole request: auth, the SQL, the XML, HTTP.

Keys look like C{dir{i // 1000}/file{i}}: 1000 keys per "directory", so at
10^6 keys the delimiter page folds 1000 common prefixes (skip-scan).

Pages timed (each C{--list-repeat} times; the median is reported):

- first:     the first 1000 keys;
- deep:      1000 keys after a marker 90 % into the bucket (start-after);
- delimiter: delimiter=/ at the root: up to 1000 common prefixes (the walk);
- prefix:    prefix=dir<middle>/ with delimiter=/: the 1000 keys of one directory.

(See C{s3balance/store/listing.py} for how each database reads them.)
"""

from __future__ import annotations

import datetime
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from sqlalchemy import create_engine, insert, pool, text

from bench.environment import LIST_BUCKET, REAL_BUCKET, daemon_config, start_daemon
from bench.sigv4client import S3Client
from tests import dbfixtures
from tests.daemon import ACCESS_KEY, SECRET_KEY
from tests.harness import SeaweedFS, harness_dir

DEFAULT_POSTGRES_URL = os.environ.get(
    "S3BALANCE_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
DEFAULT_MARIADB_URL = os.environ.get(
    "S3BALANCE_BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
)
BATCH = 10_000
PAGE = 1000


def key_of(i: int) -> str:
    return f"dir{i // 1000}/file{i}"


def bulk_insert(url: str, count: int, log: Callable[[str], None] = print) -> float:
    """Create the schema (migrations) and insert C{count} objects; -> seconds taken."""
    from s3balance.store import migrate, tables

    migrate.upgrade(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    started = time.monotonic()
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    etag = '"' + "0" * 32 + '"'
    try:
        for first in range(0, count, BATCH):
            ids = range(first + 1, min(count, first + BATCH) + 1)
            objects = [
                {
                    "id": i,
                    "bucket": LIST_BUCKET,
                    "key": key_of(i - 1).encode(),
                    "size": 4096,
                    "etag": etag,
                    "last_modified": moment,
                    "content_type": "binary/octet-stream",
                    "headers": "{}",
                    "checksums": "{}",
                }
                for i in ids
            ]
            locations = [
                {
                    "id": i,
                    "object_id": i,
                    "backend": REAL_BUCKET,
                    "real_key": f"{LIST_BUCKET}/{uuid.UUID(int=i).hex}",
                    "created": moment,
                }
                for i in ids
            ]
            with engine.begin() as conn:
                conn.execute(insert(tables.objects), objects)
                conn.execute(insert(tables.object_locations), locations)
            if (first // BATCH) % 20 == 19:
                log(f"    {first + BATCH} rows ...")
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Explicit ids leave the sequences behind: move them on.
                for table in ("objects", "object_locations"):
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {max(count, 1)})"))
                conn.execute(text("ANALYZE objects"))
                conn.execute(text("ANALYZE object_locations"))
            elif engine.dialect.name == "sqlite":
                conn.execute(text("ANALYZE"))
            elif engine.dialect.name in ("mysql", "mariadb"):
                conn.execute(text("ANALYZE TABLE objects, object_locations"))
    finally:
        engine.dispose()
    return time.monotonic() - started


class ServerDatabase:
    """A fresh database on a PostgreSQL or MariaDB server, dropped on close (tests/dbfixtures.py does both)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.url = dbfixtures.create_database_on(admin_url, prefix="s3b_bench")

    def close(self) -> None:
        dbfixtures.drop_database(self.url, self.admin_url)


def deep_marker(count: int) -> str:
    """The key 90 % into the bucket in S3 (byte) order, with a full page after it when there is room."""
    ordered = sorted(key_of(i).encode() for i in range(count))
    at = max(0, min(int(count * 0.9), count - PAGE - 1))
    return ordered[at].decode()


def time_pages(client: S3Client, count: int, repeat: int) -> dict[str, dict]:
    middle_dir = (count // 2) // 1000
    pages = {
        "first": {"max_keys": str(PAGE)},
        "deep": {"max_keys": str(PAGE), "start_after": deep_marker(count)},
        "delimiter": {"max_keys": str(PAGE), "delimiter": "/"},
        "prefix": {"max_keys": str(PAGE), "delimiter": "/", "prefix": f"dir{middle_dir}/"},
    }
    out = {}
    for name, params in pages.items():
        client.list_v2(LIST_BUCKET, **params)  # warm: connection, caches, statement cache
        times = []
        body = b""
        for _ in range(repeat):
            t0 = time.perf_counter()
            body = client.list_v2(LIST_BUCKET, **params)
            times.append(time.perf_counter() - t0)
        out[name] = {
            "median_ms": statistics.median(times) * 1e3,
            "min_ms": min(times) * 1e3,
            "max_ms": max(times) * 1e3,
            "entries": body.count(b"<Key>") + body.count(b"<CommonPrefixes>"),
            "truncated": b"<IsTruncated>true</IsTruncated>" in body,
        }
    return out


def run(
    seaweed: SeaweedFS,
    key_counts: list[int],
    databases: list[str],
    repeat: int,
    postgres_url: str = DEFAULT_POSTGRES_URL,
    twistd_args: str = "",
    daemon_overrides: Optional[list[str]] = None,
    log: Callable[[str], None] = print,
    mariadb_url: str = DEFAULT_MARIADB_URL,
) -> dict:
    """-> {"sqlite": {"10000": {"insert_s": .., "pages": {...}}, ...}, "postgres": ..., "mariadb": ...}"""
    results: dict = {}
    for db in databases:
        results[db] = {}
        for count in key_counts:
            workdir = Path(harness_dir()) / f"bench-list-{db}-{count}"
            workdir.mkdir(parents=True, exist_ok=True)
            server_db: Optional[ServerDatabase] = None
            try:
                if db == "sqlite":
                    path = workdir / "list.db"
                    url = f"sqlite:///{path}"
                    database = {"type": "sqlite", "dsn": str(path)}
                elif db in ("postgres", "mariadb"):
                    admin_url = postgres_url if db == "postgres" else mariadb_url
                    try:
                        server_db = ServerDatabase(admin_url)
                    except Exception as error:
                        reason = str(error).strip().splitlines()[0]
                        log(f"  {db} not reachable at {admin_url}: {reason}; skipped")
                        results[db][str(count)] = {"skipped": reason}
                        break
                    url = server_db.url
                    database = {"type": "postgres" if db == "postgres" else "mysql", "dsn": url}
                else:
                    raise ValueError(f"unknown database {db!r} (sqlite, postgres or mariadb)")
                log(f"  {db}: inserting {count} objects ...")
                took = bulk_insert(url, count, log)
                log(f"  {db}: {count} rows in {took:.1f} s; starting a daemon on it")
                config = daemon_config(
                    seaweed, workdir, [LIST_BUCKET], database=database, overrides=daemon_overrides
                )
                daemon = start_daemon(config, f"bench-list-{db}", twistd_args)
                try:
                    client = S3Client(daemon.endpoint, ACCESS_KEY, SECRET_KEY)
                    pages = time_pages(client, count, repeat)
                    client.close()
                finally:
                    daemon.stop()
                for name, page in pages.items():
                    log(f"  {db:<8} {count:>8} keys  {name:<9} {page['median_ms']:7.1f} ms  ({page['entries']} entries)")
                results[db][str(count)] = {"insert_s": took, "pages": pages}
            finally:
                if server_db is not None:
                    server_db.close()
                if db == "sqlite":
                    for leftover in workdir.glob("list.db*"):
                        leftover.unlink(missing_ok=True)
    return results
