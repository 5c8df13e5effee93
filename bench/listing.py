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

With C{--list-versions 1,3} every key count is measured with 1 version per
key, then with 3 (two noncurrent versions and the latest) on the same
database: the noncurrent rows are added to it between the two, as
C{store/versions.py} writes them (a version id, C{latest} NULL, not a delete
marker, their own locations).  Row ids go round by round (the key's
versions as if every key were written V times over: round r of key i is id
C{r * count + i + 1}, the latest in the last round), so each key's versions
are ordered by id as the store orders them.  With one version only, the rows
are null versions, as migration 0018 makes of every existing object.

Pages are timed once the daemon's start-up work is over: the elected
daemon's first C{usage-reconcile} run (L{wait_for_usage_reconcile}), a full
aggregate of the locations that takes PostgreSQL seconds at 10^6 keys x 3
versions and slows every request on two cores while it runs.

Pages timed (each C{--list-repeat} times; the median is reported):

- first:     the first 1000 keys;
- deep:      1000 keys after a marker 90 % into the bucket (start-after);
- delimiter: delimiter=/ at the root: up to 1000 common prefixes (the walk);
- prefix:    prefix=dir<middle>/ with delimiter=/: the 1000 keys of one directory.

(See C{s3balance/store/listing.py} for how each database reads them.)

The same four pages of ListObjectVersions are timed at the store: the
function the daemon runs for it (C{s3balance.store.version_listing.list_versions}),
called on one connection of this process (no HTTP, no XML); "deep" is a key
marker, "resume" a key marker with a version id marker (the middle version
of that key: where a truncated page ends).
"""

from __future__ import annotations

import datetime
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

from sqlalchemy import create_engine, insert, pool, text

from bench.environment import LIST_BUCKET, REAL_BUCKET, daemon_config, start_daemon
from bench.sigv4client import S3Client
from tests import dbfixtures
from tests.daemon import ACCESS_KEY, SECRET_KEY, background_runs
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


def version_id_of(object_id: int) -> str:
    """A row's version id: 32 characters of the version id alphabet, as L{versions.new_version_id}'s."""
    return uuid.UUID(int=object_id).hex


def object_id_of(i: int, version: int, count: int) -> int:
    """The row id of key C{i}'s version C{version} (0: the oldest) with C{count} keys."""
    return version * count + i + 1


def bulk_insert(
    url: str,
    count: int,
    log: Callable[[str], None] = print,
    rounds: Sequence[int] = (0,),
    total: int = 1,
) -> float:
    """
    Create the schema (migrations) unless there, and insert the versions
    C{rounds} (0: the oldest, C{total - 1}: the latest) of C{count} keys, as
    C{store/versions.py} writes them; -> seconds taken.
    """
    from s3balance.store import migrate, tables

    migrate.upgrade(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    started = time.monotonic()
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    etag = '"' + "0" * 32 + '"'
    done = 0
    try:
        for version in rounds:
            latest = 1 if version == total - 1 else None
            for first in range(0, count, BATCH):
                keys = range(first, min(count, first + BATCH))
                objects = []
                locations = []
                for i in keys:
                    object_id = object_id_of(i, version, count)
                    objects.append({
                        "id": object_id,
                        "bucket": LIST_BUCKET,
                        "key": key_of(i).encode(),
                        "size": 4096,
                        "etag": etag,
                        "last_modified": moment + datetime.timedelta(seconds=version),
                        "content_type": "binary/octet-stream",
                        "headers": "{}",
                        "checksums": "{}",
                        "version_id": None if total == 1 else version_id_of(object_id),
                        "latest": latest,
                        "delete_marker": 0,
                    })
                    locations.append({
                        "id": object_id,
                        "object_id": object_id,
                        "backend": REAL_BUCKET,
                        "real_key": f"{LIST_BUCKET}/{uuid.UUID(int=object_id).hex}",
                        "created": moment,
                    })
                with engine.begin() as conn:
                    conn.execute(insert(tables.objects), objects)
                    conn.execute(insert(tables.object_locations), locations)
                done += len(objects)
                if (done // BATCH) % 20 == 0:
                    log(f"    {done} rows ...")
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Explicit ids leave the sequences behind: move them on.
                for table in ("objects", "object_locations"):
                    conn.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {max(count * total, 1)})"
                    ))
                conn.execute(text("ANALYZE objects"))
                conn.execute(text("ANALYZE object_locations"))
            elif engine.dialect.name == "sqlite":
                conn.execute(text("ANALYZE"))
            elif engine.dialect.name in ("mysql", "mariadb"):
                conn.execute(text("ANALYZE TABLE objects, object_locations"))
        if engine.dialect.name == "postgresql":
            # The tables as autovacuum keeps them in service, not as a bulk
            # load leaves them: the visibility map set (index-only scans
            # stay in the index), hint bits written, and the load's dirty
            # pages written out by a checkpoint before anything is timed
            # (else it runs under the timed pages).
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM (ANALYZE) objects"))
                conn.execute(text("VACUUM (ANALYZE) object_locations"))
                try:
                    conn.execute(text("CHECKPOINT"))
                except Exception as error:  # not allowed to this role: the pages are timed without it
                    log(f"    no CHECKPOINT ({error.__class__.__name__})")
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


def wait_for_usage_reconcile(endpoint: str, log: Callable[[str], None], timeout: float = 1800.0) -> float:
    """Wait for the daemon's first usage-reconcile run to end; -> seconds waited."""
    started = time.monotonic()
    while background_runs(endpoint, "usage-reconcile") < 1:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the daemon's first usage-reconcile run did not end within {timeout:.0f} s")
        time.sleep(0.2)
    waited = time.monotonic() - started
    log(f"    start-up usage-reconcile ended after {waited:.1f} s")
    return waited


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


def time_version_pages(url: str, count: int, total: int, most: int, repeat: int) -> dict[str, dict]:
    """
    ListObjectVersions' pages at the store (L{version_listing.list_versions}), on
    one connection, with C{total} of the C{most} rounds of versions written.
    """
    from s3balance.store import version_listing, versions

    middle_dir = (count // 2) // 1000
    marker = deep_marker(count)
    marker_i = int(marker.rsplit("file", 1)[1])
    # The middle version of the marker's key (the null one with one version).
    middle = most - 1 - total // 2
    version_marker = version_id_of(object_id_of(marker_i, middle, count)) if most > 1 else versions.NULL_VERSION
    pages = {
        "first": ("", "", "", None),
        "deep": ("", "", marker, None),
        "resume": ("", "", marker, version_marker),
        "delimiter": ("", "/", "", None),
        "prefix": (f"dir{middle_dir}/", "/", "", None),
    }
    engine = create_engine(url, pool_size=1)
    out = {}
    try:
        with engine.connect() as conn:
            for name, (prefix, delimiter, key_marker, version_id_marker) in pages.items():
                args = (LIST_BUCKET, prefix, delimiter, key_marker, version_id_marker, PAGE)
                version_listing.list_versions(conn, *args)  # warm
                conn.rollback()
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    page = version_listing.list_versions(conn, *args)
                    conn.rollback()
                    times.append(time.perf_counter() - t0)
                out[name] = {
                    "median_ms": statistics.median(times) * 1e3,
                    "min_ms": min(times) * 1e3,
                    "max_ms": max(times) * 1e3,
                    "entries": len(page.versions) + len(page.common_prefixes),
                    "truncated": page.truncated,
                }
    finally:
        engine.dispose()
    return out


def label_of(count: int, total: int) -> str:
    """A result's name: the key count, with "x3" for 3 versions a key."""
    return str(count) if total == 1 else f"{count}x{total}"


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
    version_counts: Sequence[int] = (1,),
) -> dict:
    """
    -> {"sqlite": {"10000": {"keys": 10000, "versions": 1, "insert_s": .., "pages": {...},
    "version_pages": {...}}, "10000x3": {...}, ...}, "postgres": ..., "mariadb": ...}

    For each database and key count, one database: filled with the fewest
    versions asked for, measured, the other versions added, measured again.
    """
    results: dict = {}
    totals = sorted(set(version_counts))
    if not totals or totals[0] < 1:
        raise ValueError(f"versions per key: at least 1, not {version_counts}")
    most = totals[-1]
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
                        for total in totals:
                            results[db][label_of(count, total)] = {"skipped": reason}
                        break
                    url = server_db.url
                    database = {"type": "postgres" if db == "postgres" else "mysql", "dsn": url}
                else:
                    raise ValueError(f"unknown database {db!r} (sqlite, postgres or mariadb)")
                have = 0  # versions per key in the database
                took = 0.0
                for total in totals:
                    # The latest round first, then older and older ones.
                    rounds = range(most - have - 1, most - total - 1, -1)
                    log(f"  {db}: inserting {count} objects x {total - have} version(s) ...")
                    took += bulk_insert(url, count, log, rounds=rounds, total=most)
                    have = total
                    label = label_of(count, total)
                    log(f"  {db}: {count} keys x {total} versions in {took:.1f} s; starting a daemon on it")
                    config = daemon_config(
                        seaweed, workdir, [LIST_BUCKET], database=database, overrides=daemon_overrides
                    )
                    daemon = start_daemon(config, f"bench-list-{db}", twistd_args)
                    try:
                        reconcile_s = wait_for_usage_reconcile(daemon.endpoint, log)
                        client = S3Client(daemon.endpoint, ACCESS_KEY, SECRET_KEY)
                        pages = time_pages(client, count, repeat)
                        client.close()
                    finally:
                        daemon.stop()
                    for name, page in pages.items():
                        log(f"  {db:<8} {label:>10} keys  {name:<9} {page['median_ms']:7.1f} ms"
                            f"  ({page['entries']} entries)")
                    version_pages = time_version_pages(url, count, total, most, repeat)
                    for name, page in version_pages.items():
                        log(f"  {db:<8} {label:>10} keys  versions {name:<9} {page['median_ms']:7.1f} ms"
                            f"  ({page['entries']} entries, store)")
                    results[db][label] = {
                        "keys": count, "versions": total, "insert_s": took, "reconcile_s": reconcile_s, "pages": pages,
                        "version_pages": version_pages,
                    }
            finally:
                if server_db is not None:
                    server_db.close()
                if db == "sqlite":
                    for leftover in workdir.glob("list.db*"):
                        leftover.unlink(missing_ok=True)
    return results
